"""Amp threads: one JSON document per thread, `T-<uuid>.json`, as Amp rewrites them.

Most threads live in the central store (`~/.local/share/amp/threads`, where the bench's
XDG_DATA_HOME points); one in ten in the VS Code extension's legacy store
(`~/.config/Code/User/globalStorage/sourcegraph.amp/threads3`). A thread holds its
messages (prompts with `meta.sentAt`; replies with thinking, text and tool calls and
`usage.timestamp`; tool results as user messages; now and then an `info` summary), then
`env.initial` last: the workspace tree as a percent-encoded `file://` URI, with the git
repository Amp saw (read from the cwd's `.git`). Bulk text is spliced in from a pool of
pre-serialised strings. Sizes are log-normal, 2 KB .. 400 KB.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.records import MARK, Clock, Pool

MIN_BYTES = 2 * 1024
MEDIAN_BYTES = 24 * 1024
MAX_BYTES = 400 * 1024
SIGMA = 1.1
LEGACY_SHARE = 0.1
SPREAD_DAYS = 120
_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
_HOLE = json.dumps(MARK).encode()
_MODEL = "claude-sonnet-4-5-20250929"


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    pool = Pool(rng)
    central = home / ".local" / "share" / "amp" / "threads"
    legacy = home / ".config" / "Code" / "User" / "globalStorage" / "sourcegraph.amp" / "threads3"
    for directory in (central, legacy):
        directory.mkdir(parents=True, exist_ok=True)
    repositories: dict[str, dict[str, str] | None] = {}
    written: dict[str, str] = {}
    for i in range(count):
        cwd = str(cwds[i % len(cwds)])
        if cwd not in repositories:
            repositories[cwd] = _repository(Path(cwd))
        start = _EPOCH - timedelta(seconds=rng.uniform(0, SPREAD_DAYS * 86400))
        clock = Clock(start, rng)
        thread_id = f"T-{clock.uuid()}"
        size = int(
            min(MAX_BYTES, max(MIN_BYTES, rng.lognormvariate(math.log(MEDIAN_BYTES), SIGMA)))
        )
        document = _Thread(clock, pool, rng).build(thread_id, cwd, repositories[cwd], size)
        store = legacy if rng.random() < LEGACY_SHARE else central
        with open(store / f"{thread_id}.json", "wb") as f:
            f.write(document)
        written[thread_id] = cwd
    return written


class _Thread:
    def __init__(self, clock: Clock, pool: Pool, rng: random.Random) -> None:
        self._clock = clock
        self._pool = pool
        self._rng = rng
        self._messages: list[bytes] = []
        self._size = 0

    def build(
        self, thread_id: str, cwd: str, repository: dict[str, str] | None, size: int
    ) -> bytes:
        created = self._ms()
        self._prompt(self._rng.choice(self._pool.prompts))
        self._reply(self._pool.message(), [])
        while self._size < size:
            roll = self._rng.random()
            if roll < 0.65:
                self._tool_round(self._pool.output(size - self._size))
            elif roll < 0.8:
                self._reply(self._pool.message(), [])
            elif roll < 0.97:
                self._prompt(self._rng.choice(self._pool.prompts))
            else:
                summary = {"type": "summary", "summary": {"type": "message", "summary": MARK}}
                self._add({"role": "info", "content": [summary]}, self._pool.message())
        self._reply(b'"Done."', [])
        tree: dict[str, Any] = {"displayName": os.path.basename(cwd), "uri": _file_uri(cwd)}
        if repository is not None:
            tree["repository"] = repository
        top = {
            "v": len(self._messages) * 3,
            "id": thread_id,
            "created": created,
            "title": "Bench thread",
            "agentMode": "smart",
        }
        env = {
            "initial": {
                "trees": [tree],
                "platform": {"os": "linux", "client": "CLI", "clientType": "cli"},
                "tags": [f"model:{_MODEL}"],
            }
        }
        head = json.dumps(top, separators=(",", ":"))[:-1].encode()
        tail = json.dumps(env, separators=(",", ":")).encode()
        return head + b',"messages":[' + b",".join(self._messages) + b'],"env":' + tail + b"}"

    def _prompt(self, text: str) -> None:
        self._clock.tick()
        message = {
            "role": "user",
            "messageId": len(self._messages),
            "content": [{"type": "text", "text": text}],
            "userState": {"currentlyVisibleFiles": []},
            "meta": {"sentAt": self._ms()},
        }
        self._add(message)

    def _reply(self, text: bytes, tools: list[dict[str, Any]]) -> None:
        stamp = self._clock.tick()
        content = [
            {"type": "thinking", "thinking": "Let me look at that.", "signature": "sig"},
            {"type": "text", "text": MARK},
            *tools,
        ]
        message = {
            "role": "assistant",
            "messageId": len(self._messages),
            "content": content,
            "state": {"type": "complete", "stopReason": "tool_use" if tools else "end_turn"},
            "usage": {
                "model": _MODEL,
                "inputTokens": 12,
                "outputTokens": 240,
                "cacheCreationInputTokens": 512,
                "cacheReadInputTokens": 4096,
                "totalInputTokens": 4620,
                "timestamp": stamp,
            },
        }
        self._add(message, text)

    def _tool_round(self, output: bytes) -> None:
        tool_id = "toolu_" + self._clock.uuid().replace("-", "")[:24]
        use = {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"cmd": "make test"}}
        self._reply(b'"Running the tests."', [use])
        result = {
            "type": "tool_result",
            "toolUseID": tool_id,
            "run": {"status": "done", "result": {"output": MARK, "exitCode": 0}},
        }
        self._add({"role": "user", "messageId": len(self._messages), "content": [result]}, output)

    def _add(self, message: dict[str, Any], blob: bytes = b"") -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        if blob:
            before, _, after = data.partition(_HOLE)
            data = before + blob + after
        self._messages.append(data)
        self._size += len(data) + 1

    def _ms(self) -> int:
        return int(self._clock.now.timestamp() * 1000)


def _file_uri(path: str) -> str:
    return "file://" + quote(path)


def _repository(cwd: Path) -> dict[str, str] | None:
    """What Amp records about the cwd's repository, read from `.git` (no git process)."""
    for directory in (cwd, *cwd.parents):
        git = directory / ".git"
        if git.is_dir():
            break
    else:
        return None
    try:
        head = (git / "HEAD").read_text().strip()
        config = (git / "config").read_text()
    except OSError:
        return None
    repository = {"type": "git"}
    url = next(
        (line.split("=", 1)[1].strip() for line in config.splitlines() if "url =" in line), ""
    )
    if url:
        repository["url"] = url
    if head.startswith("ref: "):
        ref = head[5:]
        repository["ref"] = ref
        with contextlib.suppress(OSError):  # a packed ref: the bench can do without the sha
            repository["sha"] = (git / ref).read_text().strip()
    else:
        repository["sha"] = head
    return repository
