"""What the follow benchmarks stand on: Claude Code sessions that grow a message at a time
as the agent writes them, and a `tracesd run` that follows their messages to a real
`tracesd server` (bench.apiserver.ApiServer, auth on, scope "all")."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.apiserver import TEAM_SYNC, ApiServer
from bench.corpus import claude_project
from bench.harness import Daemon, Repo, Stops, Workspace, read_only
from bench.records import ClaudeChain, Clock, Lines, Pool

TOKEN = "bench-follow-token"
#: a message's text, bytes of JSON (the line around it adds ~0.5 KB of envelope)
TEXT_BYTES = (200, 2048)
_PROMPTS = (
    "Add a --dry-run flag to the sync command",
    "Why does the retry helper give up after one attempt?",
    "Write a test for the config loader's error messages",
)


@dataclass(frozen=True, slots=True)
class Appended:
    """One line written to a session."""

    session_id: str
    #: the line's `uuid`: the server's sourceKey is `<role>:<uuid>`
    uuid: str
    size: int
    #: the file's size after the write
    end: int
    #: wall clock (time.time()) when the file was closed after the write
    written_at: float


class NowClock(Clock):
    """Timestamps of now, as a live agent writes them."""

    def tick(self) -> str:
        now = datetime.now(UTC)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class LiveSession:
    """A Claude Code session on disk that grows by whole lines: an assistant message, then a
    user message, alternating (text of 200 B - 2 KB each)."""

    def __init__(self, ws: Workspace, repo: Repo, session_id: str, pool: Pool) -> None:
        self.id = session_id
        self.path = claude_project(ws.home, repo.path) / f"{session_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)  # watched from the start
        self._pool = pool
        self._rng = random.Random(session_id)
        self._lines = Lines()
        self._chain = ClaudeChain(
            session_id,
            str(repo.path),
            repo.branch,
            NowClock(datetime.now(UTC), self._rng),
            self._lines,
        )
        self._texts = [m for m in pool.messages if TEXT_BYTES[0] <= len(m) <= TEXT_BYTES[1]]
        self.appends = 0
        self.size = 0

    def start(self) -> list[str]:
        """Write the session's first two lines (a prompt, a reply); their uuids."""
        self._chain.prompt(self._rng.choice(_PROMPTS))
        self._chain.reply(b'[{"type":"text","text":"Looking at it now."}]')
        data = b"".join(self._lines.parts)
        with open(self.path, "wb") as f:
            f.write(data)
        self.size = len(data)
        return [json.loads(line)["uuid"] for line in self._lines.parts]

    def append(self) -> Appended:
        """Write the next message's line, closing the file after it."""
        text = self._rng.choice(self._texts)
        before = len(self._lines.parts)
        if self.appends % 2 == 0:
            self._chain.reply(b'[{"type":"text","text":' + text + b"}]")
        else:
            self._chain.prompt(json.loads(text))
        (line,) = self._lines.parts[before:]
        with open(self.path, "ab") as f:
            f.write(line)
        written_at = time.time()
        self.appends += 1
        self.size += len(line)
        return Appended(self.id, json.loads(line)["uuid"], len(line), self.size, written_at)


def session_id(rng: random.Random) -> str:
    return str(Clock(datetime.now(UTC), rng).uuid())


@contextmanager
def following(
    ws: Workspace, label: str, *, messages: bool = True
) -> Iterator[tuple[ApiServer, Daemon]]:
    """A `tracesd server` and a `tracesd run` syncing every trace to it, messages on (the
    default; `messages=False` sets `[sync] messages = false`), with nothing else configured;
    ready once the daemon's startup scan is done."""
    server_log = ws.root / f"server-{label}.log"
    with ApiServer(ws.env, ws.root / f"server-{label}.db", server_log, token=TOKEN) as server:
        config = ws.home / ".config" / "tracesd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        team = "".join(f'{key} = "{value}"\n' for key, value in TEAM_SYNC.items())
        off = "" if messages else "messages = false\n"
        config.write_text(f'[sync]\napi_url = "{server.url}"\n{team}{off}', encoding="utf-8")
        env = {**ws.env, "TRACES_API_KEY": TOKEN}
        root = str(ws.home / ".claude" / "projects")
        with Daemon(env, ws.root / f"daemon-{label}.log") as daemon:
            daemon.wait_for("sync.started")
            daemon.wait_for("watcher.watching", lambda e: e.get("root") == root)
            daemon.wait_for("scan.finished", lambda e: e.get("reason") == "startup")
            yield server, daemon


def request_ms(server: ApiServer, count: int, rng: random.Random) -> list[float]:
    """`count` round trips of one request like the follower's: a batch of one message (of
    a probe trace, made first) POSTed to the server and answered, each timed."""
    probe = session_id(rng)
    _call(server, "PUT", f"/v1/traces/{probe}", {"agentId": "claude-code", "title": "probe"})
    times: list[float] = []
    for order in range(count):
        text = json.loads(rng.choice(Pool(rng).messages))
        entry = {
            "externalId": session_id(rng),
            "role": "assistant",
            "order": order,
            "textContent": text,
            "sourceKey": f"assistant:probe-{order}",
        }
        started = time.perf_counter()
        _call(
            server,
            "POST",
            f"/v1/traces/{probe}/messages/batch",
            {"idScheme": "v2", "messages": [entry]},
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


def _call(server: ApiServer, method: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


class FollowOffsets(Stops):
    """Where the daemon's follower has read each session to, as committed in its database
    (tracesd_message_follow.offset): a thread polls it read-only every `interval_s` and
    notes when each new offset first showed (time.time())."""

    def __init__(self, db: Path, interval_s: float = 0.005) -> None:
        #: (trace id, offset, first seen) of every offset seen
        self.changes: list[tuple[str, int, float]] = []
        self._db = db
        self._interval_s = interval_s
        self._offsets: dict[str, int] = {}
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="follow-offsets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def wait(self, trace_id: str, offset: int, timeout_s: float) -> float | None:
        """When the follower's offset for `trace_id` first reached `offset` (None: not in
        `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for tid, at_offset, seen in self.changes:
                    if tid == trace_id and at_offset >= offset:
                        return seen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def _poll(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopped.wait(self._interval_s):
                if conn is None:
                    if not self._db.exists():
                        continue
                    conn = read_only(self._db)
                try:
                    rows = conn.execute(
                        "SELECT trace_id, offset FROM tracesd_message_follow"
                    ).fetchall()
                except sqlite3.OperationalError:
                    continue  # the table is not there yet
                now = time.time()
                with self._changed:
                    for trace_id, offset in rows:
                        if offset is not None and self._offsets.get(trace_id) != offset:
                            self._offsets[trace_id] = offset
                            self.changes.append((trace_id, offset, now))
                    self._changed.notify_all()
        finally:
            if conn is not None:
                conn.close()
