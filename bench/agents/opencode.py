"""OpenCode corpus: half the sessions as rows of one `opencode.db` (>= 1.2.0), half as the
legacy JSON tree (< 1.2.0: `storage/{project,session,message,part}/`), as a machine that
upgraded without migrating every session would have them.

A session is a few turns: a user message with its prompt (sometimes after a synthetic
editor-context part), and assistant messages made of step, reasoning, tool and text parts.
Sizes are log-normal (median ~30 KB, clipped to 3 KB .. 400 KB), most of it in tool
outputs. About one session in twelve also has a subagent child session (`parent_id`),
which is not a trace and is not in the returned map. Bulk text comes pre-serialised from
bench.records.Pool and is spliced into each part's JSON: 1,000 sessions cost about half a
second of Python, plus creating the legacy tree's ~6,000 files and ~2,000 directories
(another 1 to 5 s, depending on the disk). The same seed gives the same ids, sizes and
layout.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import random
import sqlite3
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.records import LONG_LINE, Pool

MEDIAN_BYTES = 30 * 1024
MIN_BYTES = 3 * 1024
MAX_BYTES = 400 * 1024
SIGMA = 1.1
CHILD_SHARE = 1 / 12
PLACEHOLDER_SHARE = 0.1
#: sessions start within this many days before _EPOCH_MS (2026-11-01T00:00:00Z)
SPREAD_DAYS = 180
_EPOCH_MS = 1_793_491_200_000
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_MODEL = {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}


@dataclass(slots=True)
class _Message:
    id: str
    role: str
    created: int
    data: str
    #: (part id, time, JSON text)
    parts: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Session:
    id: str
    cwd: str
    project: str
    title: str
    created: int
    updated: int
    parent: str | None
    messages: list[_Message]


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    """Write `count` OpenCode sessions under `home`, round-robin over `cwds`; return
    {trace id: cwd} (children excluded: they are part of their parent's trace)."""
    rng = random.Random(seed)
    maker = _Maker(rng, Pool(rng))
    sessions: list[_Session] = []
    written: dict[str, str] = {}
    for i in range(count):
        cwd = str(cwds[i % len(cwds)])
        session = maker.session(cwd)
        written[session.id] = cwd
        sessions.append(session)
        if rng.random() < CHILD_SHARE:
            sessions.append(maker.session(cwd, parent=session))
    data = home / ".local" / "share" / "opencode"
    data.mkdir(parents=True, exist_ok=True)
    in_store = set(list(written)[: (count + 1) // 2])
    _write_store(data / "opencode.db", [s for s in sessions if (s.parent or s.id) in in_store])
    _write_tree(data / "storage", [s for s in sessions if (s.parent or s.id) not in in_store])
    return written


class _Maker:
    def __init__(self, rng: random.Random, pool: Pool) -> None:
        self._rng = rng
        self._pool = pool
        self._counter = 0
        self._sizes = [len(b) for b in pool.outputs]

    def _id(self, prefix: str, ms: int, descending: bool = False) -> str:
        """OpenCode's ids: 12 hex digits of time and a counter (inverted for sessions, so
        newer sort first), then 14 random base62 characters."""
        self._counter += 1
        value = (ms * 0x1000 + self._counter % 0x1000) & 0xFFFF_FFFF_FFFF
        if descending:
            value ^= 0xFFFF_FFFF_FFFF
        tail = "".join(self._rng.choices(_BASE62, k=14))
        return f"{prefix}_{value:012x}{tail}"

    def session(self, cwd: str, parent: _Session | None = None) -> _Session:
        rng = self._rng
        if parent is None:
            start = _EPOCH_MS - rng.randrange(SPREAD_DAYS * 86_400_000)
            size = int(math.exp(rng.gauss(math.log(MEDIAN_BYTES), SIGMA)))
        else:
            start = parent.created + rng.randrange(5_000, 60_000)
            size = int(math.exp(rng.gauss(math.log(MEDIAN_BYTES / 4), SIGMA)))
        size = min(MAX_BYTES, max(MIN_BYTES, size))
        sid = self._id("ses", start, descending=True)
        prompt = rng.choice(self._pool.prompts)
        now = start + rng.randrange(500, 5_000)
        messages: list[_Message] = []
        turns = 1 + (size > 80 * 1024) + (size > 200 * 1024)
        tools = [rng.randrange(1, 4) for _ in range(turns)]
        room = size
        for turn in range(turns):
            user = self._message("user", now, {"agent": "build", "model": _MODEL})
            if turn == 0 and rng.random() < 0.3:
                context = {"type": "text", "text": f"Called the Read tool: {cwd}/README.md"}
                user.parts.append(self._part(now, {**context, "synthetic": True}))
            text = prompt if turn == 0 else rng.choice(self._pool.prompts)
            user.parts.append(self._part(now, {"type": "text", "text": text}))
            now += rng.randrange(1_000, 20_000)
            share = room * tools[turn] // sum(tools[turn:])
            reply, now = self._reply(user.id, cwd, now, tools[turn], share)
            messages += [user, reply]
            room -= sum(len(p[2]) for m in (user, reply) for p in m.parts)
        placeholder = "Child" if parent else "New"
        iso = _iso(start)
        title = (
            f"{placeholder} session - {iso}"
            if parent or rng.random() < PLACEHOLDER_SHARE
            else " ".join(prompt.split()[:6]).capitalize()
        )
        project = hashlib.sha1(cwd.encode()).hexdigest()  # stands in for the root commit
        return _Session(
            sid, cwd, project, title, start, now, parent.id if parent else None, messages
        )

    def _output(self, room: int) -> bytes:
        """A tool output of about `room` bytes (the pool's nearest smaller ones)."""
        pool = self._pool
        long = [b for b in pool.long_outputs if len(b) <= room]
        if room > LONG_LINE and long:
            return self._rng.choice(long)
        fitting = bisect.bisect_right(self._sizes, room)
        return self._rng.choice(pool.outputs[max(0, fitting - 8) : max(1, fitting)])

    def _message(self, role: str, at: int, extra: Mapping[str, object]) -> _Message:
        data = json.dumps({"role": role, "time": {"created": at}, **extra})
        return _Message(self._id("msg", at), role, at, data)

    def _part(self, at: int, body: Mapping[str, object], blob: bytes = b"") -> tuple[str, int, str]:
        text = json.dumps(body, separators=(",", ":"))
        if blob:
            text = text.replace('"@@blob@@"', blob.decode())
        return self._id("prt", at), at, text

    def _reply(
        self, parent_id: str, cwd: str, at: int, tools: int, room: int
    ) -> tuple[_Message, int]:
        rng = self._rng
        extra = {
            "parentID": parent_id,
            "modelID": _MODEL["modelID"],
            "providerID": _MODEL["providerID"],
            "mode": "build",
            "path": {"cwd": cwd, "root": cwd},
            "cost": round(rng.uniform(0.001, 0.2), 4),
            "tokens": {"input": rng.randrange(1_000, 90_000), "output": rng.randrange(50, 4_000)},
            "finish": "stop",
        }
        reply = self._message("assistant", at, extra)
        reply.parts.append(self._part(at, {"type": "step-start"}))
        if rng.random() < 0.5:
            thought = {"type": "reasoning", "text": "@@blob@@", "time": {"start": at, "end": at}}
            reply.parts.append(self._part(at, thought, self._pool.message()))
        for i in range(tools):
            at += rng.randrange(500, 15_000)
            output = self._output(room // (tools - i))
            room -= len(output)
            state = {
                "status": "completed",
                "input": {"command": "make test"},
                "output": "@@blob@@",
                "title": "make test",
                "metadata": {},
                "time": {"start": at - 400, "end": at},
            }
            call = {"type": "tool", "callID": f"toolu_{at:x}", "tool": "bash", "state": state}
            reply.parts.append(self._part(at, call, output))
        at += rng.randrange(500, 10_000)
        reply.parts.append(
            self._part(at, {"type": "text", "text": "@@blob@@"}, self._pool.message())
        )
        reply.parts.append(self._part(at, {"type": "step-finish", "reason": "stop"}))
        return reply, at


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- writers

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS `project` (`id` text PRIMARY KEY NOT NULL,
        `worktree` text NOT NULL, `vcs` text, `name` text, `time_created` integer NOT NULL,
        `time_updated` integer NOT NULL, `time_initialized` integer,
        `sandboxes` text NOT NULL, `commands` text)""",
    """CREATE TABLE IF NOT EXISTS `session` (`id` text PRIMARY KEY NOT NULL,
        `project_id` text NOT NULL, `workspace_id` text, `parent_id` text,
        `slug` text NOT NULL, `directory` text NOT NULL, `title` text NOT NULL,
        `version` text NOT NULL, `share_url` text, `summary_additions` integer,
        `summary_deletions` integer, `summary_files` integer, `summary_diffs` text,
        `revert` text, `permission` text, `cost` real DEFAULT 0 NOT NULL,
        `tokens_input` integer DEFAULT 0 NOT NULL, `tokens_output` integer DEFAULT 0 NOT NULL,
        `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
        `time_compacting` integer, `time_archived` integer)""",
    "CREATE INDEX IF NOT EXISTS `session_project_idx` ON `session` (`project_id`)",
    "CREATE INDEX IF NOT EXISTS `session_parent_idx` ON `session` (`parent_id`)",
    """CREATE TABLE IF NOT EXISTS `message` (`id` text PRIMARY KEY NOT NULL,
        `session_id` text NOT NULL, `time_created` integer NOT NULL,
        `time_updated` integer NOT NULL, `data` text NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS `message_session_time_created_id_idx`
        ON `message` (`session_id`, `time_created`, `id`)""",
    """CREATE TABLE IF NOT EXISTS `part` (`id` text PRIMARY KEY NOT NULL,
        `message_id` text NOT NULL, `session_id` text NOT NULL,
        `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
        `data` text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS `part_message_id_id_idx` ON `part` (`message_id`, `id`)",
    "CREATE INDEX IF NOT EXISTS `part_session_idx` ON `part` (`session_id`)",
]


def _write_store(path: Path, sessions: Sequence[_Session]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for statement in _SCHEMA:
            conn.execute(statement)
        projects = {(s.project, s.cwd, s.created) for s in sessions}
        conn.executemany(
            "INSERT OR IGNORE INTO project (id, worktree, vcs, time_created, time_updated,"
            " sandboxes) VALUES (?, ?, 'git', ?, ?, '[]')",
            [(p, cwd, at, at) for p, cwd, at in sorted(projects)],
        )
        conn.executemany(
            "INSERT INTO session (id, project_id, parent_id, slug, directory, title, version,"
            " time_created, time_updated) VALUES (?, ?, ?, ?, ?, ?, '1.17.13', ?, ?)",
            [
                (s.id, s.project, s.parent, s.id[-8:].lower(), s.cwd, s.title, s.created, s.updated)
                for s in sessions
            ],
        )
        conn.executemany(
            "INSERT INTO message VALUES (?, ?, ?, ?, ?)",
            [(m.id, s.id, m.created, m.created, m.data) for s in sessions for m in s.messages],
        )
        conn.executemany(
            "INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)",
            [
                (pid, m.id, s.id, at, at, text)
                for s in sessions
                for m in s.messages
                for pid, at, text in m.parts
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _write_tree(storage: Path, sessions: Sequence[_Session]) -> None:
    made: set[Path] = set()

    def put(path: Path, text: str) -> None:
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    for project, cwd in sorted({(s.project, s.cwd) for s in sessions}):
        about = {"id": project, "worktree": cwd, "vcs": "git", "time": {"created": _EPOCH_MS}}
        put(storage / "project" / f"{project}.json", json.dumps(about, indent=2))
    for s in sessions:
        for m in s.messages:
            body = json.loads(m.data)
            put(storage / "message" / s.id / f"{m.id}.json", _legacy(m.id, s.id, body))
            for pid, _, text in m.parts:
                head = f'{{"id":"{pid}","sessionID":"{s.id}","messageID":"{m.id}",'
                put(storage / "part" / m.id / f"{pid}.json", head + text[1:])
        info: dict[str, object] = {
            "id": s.id,
            "version": "1.1.40",
            "projectID": s.project,
            "directory": s.cwd,
            "title": s.title,
            "time": {"created": s.created, "updated": s.updated},
        }
        if s.parent:
            info["parentID"] = s.parent
        # written last, as OpenCode rewrites it when the turn ends
        put(storage / "session" / s.project / f"{s.id}.json", json.dumps(info, indent=2))


def _legacy(message_id: str, session_id: str, body: Mapping[str, object]) -> str:
    return json.dumps({"id": message_id, "sessionID": session_id, **body}, indent=2)
