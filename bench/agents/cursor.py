"""Cursor corpus: IDE composers in one global `state.vscdb`, agent transcripts, CLI chats.

Of `count` sessions, 65 % are IDE composers (rows `composerData:<id>` and one
`bubbleId:<id>:<bubble>` per message in `cursorDiskKV`, among rows of the kinds tracesd
ignores: checkpoints, code-block diffs, request contexts, drafts). Most of them also have an
agent transcript (`~/.cursor/projects/<slug>/agent-transcripts/<id>.jsonl`, some `.txt`,
some nested `<id>/<id>.jsonl`); a fifth are Cursor 2 composers without
`workspaceIdentifier`, found through the workspace store that lists them. 15 % are
transcripts alone (no composer: their cwd comes from the slug), 20 % CLI chats
(`~/.cursor/chats/<md5(cwd)>/<id>/store.db`, hex meta, JSON message blobs, protobuf index
nodes). Every cwd has a `workspaceStorage/<ws>/workspace.json`, as Cursor makes when a
folder is opened. Session sizes are log-normal (median ~20 KB, 3 KB .. 300 KB); text comes
from a small pool, so 1,000 sessions take well under a second or two. Same seed, same files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

_EPOCH_MS = 1_793_577_600_000  # 2026-11-01T00:00:00Z
_KV = "CREATE TABLE IF NOT EXISTS {} (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)"
_VOCAB = (
    "the parser cache retry module config handler test fixture endpoint schema query index "
    "worker queue token request response client server build deploy lint type error log "
    "metric trace branch commit merge rebase refactor rename split inline extract function "
    "class method field value list map set async await lock timeout budget page row column"
)
_ASKS = (
    "Add a retry with backoff to the {} {}",
    "Why does the {} {} fail when the {} is empty?",
    "Refactor the {} {} so the {} is injected",
    "Write tests for the {} {} covering the {} path",
    "Rename {} to {} everywhere and update the {}",
    "Explain how the {} {} talks to the {}",
)


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    """Write `count` Cursor sessions under `home`, round-robin over `cwds`; {trace id: cwd}."""
    rng = random.Random(seed)
    pool = _Pool(rng)
    user = home / ".config" / "Cursor" / "User"
    workspaces = _workspaces(user / "workspaceStorage", cwds)
    written: dict[str, str] = {}
    ide_rows: list[tuple[str, str]] = []
    listed: dict[Path, list[str]] = {}
    for i in range(count):
        cwd = cwds[i % len(cwds)]
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = _EPOCH_MS - rng.randrange(180 * 86_400_000)
        messages = pool.conversation(_size(rng))
        updated = created + 4_000 * len(messages) + rng.randrange(60_000)
        kind = rng.random()
        if kind < 0.65:
            cursor2 = rng.random() < 0.2
            ide_rows += _composer(sid, cwd, messages, created, updated, rng, cursor2=cursor2)
            if cursor2:
                listed.setdefault(workspaces[cwd], []).append(sid)
            if rng.random() < 0.85:
                _transcript(home, sid, cwd, messages, updated, rng)
        elif kind < 0.80:
            _transcript(home, sid, cwd, messages, updated, rng)
        else:
            _cli_chat(home, sid, cwd, messages, created, updated)
        written[sid] = str(cwd)
    ide_rows += _noise(rng, pool, count)
    _write_ide(user / "globalStorage" / "state.vscdb", ide_rows)
    for workspace, ids in listed.items():
        _write_workspace_store(workspace / "state.vscdb", ids)
    return written


class _Pool:
    """Pre-built prompts, prose and tool output: per message only ids and choice are new."""

    def __init__(self, rng: random.Random) -> None:
        vocabulary = _VOCAB.split()

        def words(n: int) -> str:
            return " ".join(rng.choice(vocabulary) for _ in range(n))

        self.rng = rng
        self.asks = [
            rng.choice(_ASKS).format(*(rng.choice(vocabulary) for _ in range(3))) for _ in range(64)
        ]
        self.prose = [words(rng.randrange(12, 400)) + "." for _ in range(96)]
        self.output = [
            "\n".join(f"{words(6)}  # line {n}" for n in range(rng.randrange(5, 600)))
            for _ in range(32)
        ]

    def conversation(self, target: int) -> list[dict[str, Any]]:
        """Messages of about `target` bytes: prompts, replies, tool calls with output."""
        rng = self.rng
        messages: list[dict[str, Any]] = []
        size = 0
        while size < target or len(messages) < 2:
            if not messages or rng.random() < 0.15:
                text = rng.choice(self.asks)
                messages.append({"role": "user", "text": text})
            elif rng.random() < 0.5:
                tool = rng.choice(("read_file", "run_terminal_cmd", "grep", "edit_file"))
                text = rng.choice(self.output)
                messages.append({"role": "tool", "tool": tool, "text": text})
            else:
                text = rng.choice(self.prose)
                messages.append({"role": "assistant", "text": text})
            size += len(text) + 120
        if messages[-1]["role"] == "tool":
            messages.append({"role": "assistant", "text": rng.choice(self.prose)})
        return messages


def _size(rng: random.Random) -> int:
    return int(min(300_000, max(3_000, math.exp(rng.gauss(math.log(20_000), 1.2)))))


def _slug(cwd: Path) -> str:
    return re.sub(r"[^0-9A-Za-z]", "-", str(cwd)).lstrip("-")


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _query(text: str) -> str:
    return f"<user_query>\n{text}\n</user_query>"


# -- IDE ---------------------------------------------------------------------------------


def _workspaces(storage: Path, cwds: Sequence[Path]) -> dict[Path, Path]:
    out: dict[Path, Path] = {}
    for cwd in cwds:
        workspace = storage / hashlib.md5(str(cwd).encode(), usedforsecurity=False).hexdigest()
        workspace.mkdir(parents=True, exist_ok=True)
        uri = "file://" + quote(str(cwd))
        (workspace / "workspace.json").write_text(json.dumps({"folder": uri}, indent=2) + "\n")
        out[cwd] = workspace
    return out


def _composer(
    sid: str,
    cwd: Path,
    messages: list[dict[str, Any]],
    created: int,
    updated: int,
    rng: random.Random,
    *,
    cursor2: bool,
) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    heads: list[dict[str, Any]] = []
    for n, message in enumerate(messages):
        bid = _id(rng)
        kind = 1 if message["role"] == "user" else 2
        heads.append({"bubbleId": bid, "type": kind, "grouping": {"isRenderable": True}})
        bubble: dict[str, Any] = {
            "_v": 3,
            "type": kind,
            "bubbleId": bid,
            "text": message["text"] if message["role"] != "tool" else "",
            "richText": "",
            "unifiedMode": 2,
            "createdAt": _iso(created + 4_000 * n),
        }
        if message["role"] == "tool":
            bubble["capabilityType"] = 15
            bubble["toolFormerData"] = {
                "tool": 5,
                "name": message["tool"],
                "status": "completed",
                "rawArgs": _dump({"target": "src/app.py"}),
                "result": _dump({"contents": message["text"]}),
            }
        elif kind == 2:
            bubble["modelInfo"] = {"modelName": "claude-4.5-sonnet"}
            start = created + 4_000 * n + 0.25
            bubble["timingInfo"] = {"clientStartTime": start, "clientEndTime": start + 3_900.5}
        rows.append((f"bubbleId:{sid}:{bid}", _dump(bubble)))
    composer: dict[str, Any] = {
        "_v": 17 if not cursor2 else 10,
        "composerId": sid,
        "name": messages[0]["text"][:40],
        "richText": "",
        "text": "",
        "hasLoaded": True,
        "isDraft": False,
        "status": "completed",
        "isAgentic": True,
        "unifiedMode": "agent",
        "createdAt": created,
        "lastUpdatedAt": updated,
        "fullConversationHeadersOnly": heads,
        "conversationMap": {},
        "modelConfig": {"modelName": "claude-4.5-sonnet", "maxMode": False},
        "subComposerIds": [],
        "subagentComposerIds": [],
        "todos": [],
        "trackedGitRepos": [],
        "context": {"fileSelections": [], "mentions": {}},
    }
    if not cursor2:
        composer["workspaceIdentifier"] = {
            "id": hashlib.md5(str(cwd).encode(), usedforsecurity=False).hexdigest(),
            "uri": {"$mid": 1, "fsPath": str(cwd), "path": str(cwd), "scheme": "file"},
        }
    rows.append((f"composerData:{sid}", _dump(composer)))
    return rows


def _noise(rng: random.Random, pool: _Pool, count: int) -> list[tuple[str, str]]:
    """Rows of the kinds tracesd never reads, and composers that are not sessions."""
    rows = [("composerData:empty-state-draft", _dump({"composerId": "x", "isDraft": True}))]
    for _ in range(count):
        kind = rng.choice(("checkpointId", "codeBlockDiff", "messageRequestContext"))
        rows.append((f"{kind}:{_id(rng)}:{_id(rng)}", _dump({"blob": rng.choice(pool.output)})))
    for _ in range(max(1, count // 50)):
        sid = _id(rng)
        rows.append((f"composerData:{sid}", _dump({"composerId": sid, "createdAt": _EPOCH_MS})))
    return rows


def _write_ide(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # as Cursor keeps it
        con.execute("PRAGMA synchronous=OFF")
        con.execute(_KV.format("ItemTable"))
        con.execute(_KV.format("cursorDiskKV"))
        con.executemany("INSERT INTO cursorDiskKV VALUES (?, ?)", rows)
        settings = [("workbench.colorTheme", '"Cursor Dark"'), ("composer.hasSeenTour", "true")]
        con.executemany("INSERT INTO ItemTable VALUES (?, ?)", settings)
        con.commit()
    finally:
        con.close()


def _write_workspace_store(path: Path, ids: list[str]) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute(_KV.format("ItemTable"))
        heads = [{"type": "head", "composerId": sid, "unifiedMode": "agent"} for sid in ids]
        data = {"allComposers": heads, "selectedComposerIds": ids[-1:]}
        con.execute("INSERT INTO ItemTable VALUES ('composer.composerData', ?)", (_dump(data),))
        con.commit()
    finally:
        con.close()


# -- transcripts and CLI chats -----------------------------------------------------------


def _transcript(
    home: Path,
    sid: str,
    cwd: Path,
    messages: list[dict[str, Any]],
    updated: int,
    rng: random.Random,
) -> None:
    folder = home / ".cursor" / "projects" / _slug(cwd) / "agent-transcripts"
    shape = rng.random()
    if shape < 0.1:
        path, body = folder / f"{sid}.txt", _as_text(messages)
    else:
        path = folder / sid / f"{sid}.jsonl" if shape < 0.3 else folder / f"{sid}.jsonl"
        body = "".join(_dump(_line(m)) + "\n" for m in messages)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    os.utime(path, ns=(updated * 1_000_000, updated * 1_000_000))


def _line(message: dict[str, Any]) -> dict[str, Any]:
    role, text = message["role"], message["text"]
    if role == "user":
        return {"role": "user", "message": {"content": [{"type": "text", "text": _query(text)}]}}
    if role == "tool":
        call = {"type": "tool_use", "name": message["tool"], "input": {"target": "src/app.py"}}
        return {"role": "assistant", "message": {"content": [call]}}
    return {"role": "assistant", "message": {"content": [{"type": "text", "text": text}]}}


def _as_text(messages: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for message in messages:
        if message["role"] == "user":
            out += ["user:", _query(message["text"]), ""]
        elif message["role"] == "tool":
            body = "\n".join("  " + ln for ln in message["text"].split("\n")[:20])
            out += ["assistant:", f"[Tool call] {message['tool']}", "  target: src/app.py"]
            out += [f"[Tool result] {message['tool']}", body, ""]
        else:
            out += ["assistant:", message["text"], ""]
    return "\n".join(out)


def _cli_chat(
    home: Path, sid: str, cwd: Path, messages: list[dict[str, Any]], created: int, updated: int
) -> None:
    project = hashlib.md5(str(cwd).encode(), usedforsecurity=False).hexdigest()
    path = home / ".cursor" / "chats" / project / sid / "store.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    blobs: list[tuple[str, bytes]] = []

    def put(data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        blobs.append((digest.hex(), data))
        return digest

    context = "<user_info>\nOS: linux\nShell: bash\nWorkspace: " + str(cwd) + "\n</user_info>"
    ids = [put(_dump({"role": "system", "content": "You are a coding agent."}).encode())]
    ids.append(
        put(_dump({"role": "user", "content": [{"type": "text", "text": context}]}).encode())
    )
    for message in messages:
        role, text = message["role"], message["text"]
        block = {"type": "text", "text": _query(text) if role == "user" else text}
        if role == "tool":
            block = {"type": "tool-result", "toolName": message["tool"], "result": text}
        data = {"role": role, "content": [block]}
        ids.append(put(_dump(data).encode()))
        if len(ids) % 8 == 0:  # index nodes: a protobuf list of message ids, as the DAG keeps
            put(b"".join(b"\x0a\x20" + i for i in ids))
    root = put(b"".join(b"\x0a\x20" + i for i in ids))
    head = {
        "agentId": sid,
        "latestRootBlobId": root.hex(),
        "name": messages[0]["text"][:40],
        "mode": "default",
        "createdAt": created,
        "lastUsedModel": "claude-4.5-sonnet",
    }
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")  # not persistent: only makes writing it fast
        con.execute("CREATE TABLE blobs (id TEXT PRIMARY KEY, data BLOB)")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", blobs)
        con.execute("INSERT INTO meta VALUES ('0', ?)", (_dump(head).encode().hex(),))
        con.commit()
    finally:
        con.close()
    os.utime(path, ns=(updated * 1_000_000, updated * 1_000_000))
