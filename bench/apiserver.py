"""`tracesd server` for the benchmarks: a subprocess on a free loopback port, and read-only
views of its database (the rows it holds; when each row first became visible)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.harness import TRACESD, GitRow, Stops, read_only
from bench.measure import BenchError, stop_process
from tracesd.config import SyncConfig

#: the server's token variable (tracesd.server.run.TOKENS_ENV)
TOKENS_ENV = "TRACESD_SERVER_TOKENS"
#: the client's `[sync]` settings for a team server: every captured trace is sent (`scope =
#: "all"`; the default, "shared", sends only traces shared with the Traces CLI, and the
#: benchmarks' traces are not). Empty for a tracesd without `scope`, which sends them all.
TEAM_SYNC: dict[str, Any] = (
    {"scope": "all"} if "scope" in {f.name for f in dataclasses.fields(SyncConfig)} else {}
)


class ApiServer(Stops):
    """`tracesd server --port 0 --db DB --log-format json` (DB a SQLite path or a
    `postgresql://` URL), ready once it has logged `server.started` (which names the bound
    port). Auth is on with `token`, off (`--no-auth`) without one. Leaving the `with` block
    stops it: SIGTERM, then SIGKILL."""

    def __init__(
        self,
        env: Mapping[str, str],
        db: Path | str,
        log_path: Path,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.target = str(db)
        self.log_path = log_path
        argv = [TRACESD, "server", "--port", "0", "--db", self.target, "--log-format", "json"]
        env = dict(env)
        if token is None:
            argv.append("--no-auth")
        else:
            env[TOKENS_ENV] = token
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
        try:
            self.port = self._wait_started(timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def db(self) -> Path:
        """The SQLite file it serves (one on PostgreSQL has none)."""
        if self.target.startswith(("postgresql:", "postgres:")):
            raise BenchError(f"{self.target} is not a SQLite file")
        return Path(self.target)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        stop_process(self.proc, grace_s)

    def _wait_started(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        with self.log_path.open("rb") as log:
            tail = b""
            while True:
                *lines, tail = (tail + log.read()).split(b"\n")
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and event.get("event") == "server.started":
                        return int(event["port"])
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"tracesd server exited ({self.proc.returncode}) before listening: "
                        f"{self.log_path}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(f"tracesd server not listening after {timeout_s:g}s")
                time.sleep(0.01)


def server_rows(db: Path) -> dict[str, GitRow]:
    """externalId -> (projectPath, gitRemoteUrl, gitBranch, gitRef) of every stored trace."""
    conn = read_only(db)
    try:
        sql = "SELECT external_id, project_path, git_remote_url, git_branch, git_ref FROM traces"
        return {row[0]: tuple(row[1:]) for row in conn.execute(sql)}
    finally:
        conn.close()


class Arrivals(Stops):
    """When each trace first became visible in a server database: a thread polls it
    read-only every `interval_s` and notes the wall-clock time (time.time()) of the first
    poll that saw each new row, so a time is late by at most one interval plus a query."""

    #: (a growing cursor, the key) of the rows past the cursor
    QUERY = "SELECT seq, external_id FROM traces WHERE seq > ? ORDER BY seq"
    NAME = "arrivals"

    @staticmethod
    def key(value: object) -> str:
        return str(value)

    def __init__(self, db: Path, interval_s: float = 0.005) -> None:
        self.polls = 0
        self._db = db
        self._interval_s = interval_s
        self._seen: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._poll, name=self.NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    @property
    def count(self) -> int:
        with self._changed:
            return len(self._seen)

    def wait(self, ids: Iterable[str], timeout_s: float) -> dict[str, float]:
        """First-seen times of `ids`, waiting up to `timeout_s` for the missing ones (those
        still missing then are left out)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if self._error is not None:
                    raise BenchError(f"polling {self._db} failed: {self._error}")
                remaining = deadline - time.monotonic()
                if wanted <= self._seen.keys() or remaining <= 0:
                    return {i: self._seen[i] for i in wanted if i in self._seen}
                self._changed.wait(remaining)

    def _poll(self) -> None:
        last = 0
        try:
            conn = read_only(self._db)
        except Exception as exc:
            self._fail(exc)
            return
        try:
            while not self._stopped.wait(self._interval_s):
                rows = conn.execute(self.QUERY, (last,)).fetchall()
                now = time.time()
                self.polls += 1
                if rows:
                    last = rows[-1][0]
                    with self._changed:
                        for _, value in rows:
                            self._seen.setdefault(self.key(value), now)
                        self._changed.notify_all()
        except Exception as exc:
            self._fail(exc)
        finally:
            conn.close()

    def _fail(self, exc: BaseException) -> None:
        with self._changed:
            self._error = exc
            self._changed.notify_all()


class MessageArrivals(Arrivals):
    """When each message first became visible in a server database, by the line it came
    from (the `<uuid>` of its sourceKey `<role>:<uuid>`); polled as Arrivals polls traces."""

    QUERY = "SELECT rowid, source_key FROM messages WHERE rowid > ? ORDER BY rowid"
    NAME = "message-arrivals"

    @staticmethod
    def key(value: object) -> str:
        return str(value).partition(":")[2]
