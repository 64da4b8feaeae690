"""Copilot Chat (VS Code) sessions: `~/.config/Code/User/workspaceStorage/<ws>/chatSessions/`.

One workspace directory per cwd (named like VS Code's: a hash, with `workspace.json`
naming the folder), its sessions mostly operation logs (`.jsonl`: a snapshot, then one
push per request and per streamed response part, then the result and the state) and
some older flat `.json` snapshots. Sizes are log-uniform from 3 KB to 300 KB; tool output
and markdown come from a pool of pre-serialised strings, so generation is fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.records import MARK, Lines, Pool

MIN_BYTES = 3 * 1024
MAX_BYTES = 300 * 1024
#: share of sessions in the older flat format
FLAT_SHARE = 0.15
#: sessions start in the 180 days before this (ms)
_EPOCH_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
_MODELS = ("copilot/gpt-4.1", "copilot/claude-sonnet-4.5", "copilot/gpt-5-mini")
_TOOLS = ("copilot_readFile", "copilot_findTextInFiles", "run_in_terminal", "copilot_applyPatch")


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    """Write `count` sessions spread over `cwds` (round-robin); {session id: cwd}."""
    rng = random.Random(seed)
    pool = Pool(rng)
    storage = home / ".config" / "Code" / "User" / "workspaceStorage"
    chats: dict[Path, Path] = {}
    written: dict[str, str] = {}
    for n in range(count):
        cwd = cwds[n % len(cwds)]
        if cwd not in chats:
            chats[cwd] = _workspace(storage, cwd)
        session = _Session(rng, pool)
        target = int(math.exp(rng.uniform(math.log(MIN_BYTES), math.log(MAX_BYTES))))
        if rng.random() < FLAT_SHARE:
            data = session.flat(target)
            (chats[cwd] / f"{session.id}.json").write_bytes(data)
        else:
            (chats[cwd] / f"{session.id}.jsonl").write_bytes(session.log(target))
        written[session.id] = str(cwd)
    return written


def _spliced(part: dict[str, Any], blob: bytes) -> Any:
    """`part` with its blob (a JSON string) in place of MARK."""
    return json.loads(json.dumps(part).replace(json.dumps(MARK), blob.decode()))


def _workspace(storage: Path, cwd: Path) -> Path:
    workspace = storage / hashlib.md5(str(cwd).encode()).hexdigest()
    (workspace / "chatSessions").mkdir(parents=True, exist_ok=True)
    folder = {"folder": "file://" + quote(str(cwd))}
    (workspace / "workspace.json").write_text(json.dumps(folder, indent=2))
    return workspace / "chatSessions"


class _Session:
    def __init__(self, rng: random.Random, pool: Pool) -> None:
        self._rng = rng
        self._pool = pool
        self.id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.created = _EPOCH_MS - rng.randrange(180 * 86_400_000)
        self._now = self.created
        self._model = rng.choice(_MODELS)

    def log(self, target: int) -> bytes:
        """An operation log as VS Code appends it, flush after flush."""
        lines = Lines()
        lines.add({"kind": 0, "v": self._header()})
        n = 0
        while n == 0 or lines.size < target:
            lines.add({"kind": 2, "k": ["requests"], "v": [self._request(n)]})
            for part, blob in self._parts(target - lines.size):
                lines.add({"kind": 2, "k": ["requests", n, "response"], "v": [part]}, blob)
            if n == 0 and self._rng.random() < 0.5:
                lines.add({"kind": 1, "k": ["customTitle"], "v": self._pool.prompts[0][:40]})
            lines.add({"kind": 1, "k": ["requests", n, "result"], "v": self._result()})
            state = {"value": 1, "completedAt": self._tick()}
            lines.add({"kind": 1, "k": ["requests", n, "modelState"], "v": state})
            n += 1
        return b"".join(lines.parts)

    def flat(self, target: int) -> bytes:
        """A flat snapshot (older builds): the whole session as one JSON document."""
        requests: list[bytes] = []
        size = 0
        while not requests or size < target:
            request = self._request(len(requests))
            request["response"] = [_spliced(p, b) for p, b in self._parts(target - size)]
            request["result"] = self._result()
            encoded = json.dumps(request, separators=(",", ":")).encode()
            requests.append(encoded)
            size += len(encoded)
        head = {"version": 3, "requesterUsername": "devuser", "initialLocation": "panel"}
        tail = {
            "sessionId": self.id,
            "creationDate": self.created,
            "isImported": False,
            "lastMessageDate": self._tick(),
        }
        return (
            json.dumps(head)[:-1].encode()
            + b',"requests":['
            + b",".join(requests)
            + b"],"
            + json.dumps(tail)[1:].encode()
        )

    def _header(self) -> dict[str, Any]:
        return {
            "version": 3,
            "creationDate": self.created,
            "initialLocation": "panel",
            "responderUsername": "GitHub Copilot",
            "sessionId": self.id,
            "hasPendingEdits": False,
            "requests": [],
            "pendingRequests": [],
            "inputState": {"inputText": "", "attachments": [], "mode": {"id": "agent"}},
        }

    def _request(self, n: int) -> dict[str, Any]:
        text = self._rng.choice(self._pool.prompts)
        return {
            "requestId": f"request_{uuid.UUID(int=self._rng.getrandbits(128), version=4)}",
            "timestamp": self._tick(),
            "agent": {"id": "github.copilot.editsAgent", "name": "agent"},
            "modelId": self._model,
            "responseId": f"response_{self.id[:8]}_{n}",
            "followups": [],
            "modelState": {"value": 0},
            "editedFileEvents": [],
            "response": [],
            "message": {"text": text, "parts": [{"kind": "text", "text": text}]},
            "variableData": {"variables": []},
        }

    def _parts(self, room: int) -> list[tuple[dict[str, Any], bytes]]:
        """Response parts with their blob (tool output, markdown), to splice in at MARK."""
        parts: list[tuple[dict[str, Any], bytes]] = []
        for _ in range(self._rng.randint(1, 6)):
            if self._rng.random() < 0.5:
                output = self._pool.output(max(room, 512))
                tool = {
                    "kind": "toolInvocationSerialized",
                    "toolId": self._rng.choice(_TOOLS),
                    "toolCallId": f"call_{self._rng.getrandbits(64):016x}",
                    "isConfirmed": {"type": 1},
                    "isComplete": True,
                    "resultDetails": {"input": "{}", "output": [{"value": MARK}]},
                }
                parts.append((tool, output))
                room -= len(output)
            parts.append(({"value": MARK, "supportThemeIcons": False}, self._pool.message()))
            self._tick()
        return parts

    def _result(self) -> dict[str, Any]:
        elapsed = self._rng.randint(800, 60_000)
        return {"timings": {"firstProgress": elapsed // 4, "totalElapsed": elapsed}}

    def _tick(self) -> int:
        self._now += self._rng.randint(500, 45_000)
        return self._now
