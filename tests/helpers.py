"""Real things for tests: git repositories, agent session files, a `tracesd run` process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tracesd import sqliteuri

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
#: expected.json's sessions, and the traces they make (subagents are part of their parent;
#: Cursor's transcript and IDE store hold one session)
EXPECTED_SESSIONS: list[dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())[
    "sessions"
]
FIXTURE_TRACES: frozenset[tuple[str, str]] = frozenset(
    (s["agent"], s["session_id"]) for s in EXPECTED_SESSIONS if not s.get("is_subagent")
)

T = TypeVar("T")


def fixture_home(home: Path) -> Path:
    """The team's synthetic HOME at `home`, with the SQLite stores its script builds."""
    shutil.copytree(FIXTURES / "home", home, dirs_exist_ok=True)
    script = FIXTURES / "make_sqlite_fixtures.py"
    subprocess.run([sys.executable, str(script), "--home", str(home)], check=True)
    return home


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def make_repo(
    path: Path,
    *,
    remote: str | None = "https://github.com/example/project.git",
    commits: int = 1,
    branch: str = "main",
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    if remote:
        git(path, "remote", "add", "origin", remote)
    for i in range(commits):
        commit(path, f"commit {i}")
    return path


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# --------------------------------------------------------------------- session files


def claude_session(
    home: Path,
    cwd: Path | str,
    prompt: str = "Fix the flaky test",
    *,
    session_id: str | None = None,
    extra_lines: list[dict[str, Any]] | None = None,
) -> tuple[str, Path]:
    """Write a Claude Code transcript (atomically, like a fresh session appears)."""
    session_id = session_id or str(uuid.uuid4())
    project = home / ".claude" / "projects" / str(cwd).replace("/", "-").replace(".", "-")
    project.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "type": "user",
            "cwd": str(cwd),
            "sessionId": session_id,
            "message": {"role": "user", "content": prompt},
            "timestamp": "2026-11-28T10:00:00.000Z",
        },
        *(extra_lines or []),
    ]
    path = project / f"{session_id}.jsonl"
    write_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))
    return session_id, path


def codex_session(home: Path, cwd: Path | str, prompt: str = "Add retries") -> tuple[str, Path]:
    session_id = str(uuid.uuid4())
    day = home / ".codex" / "sessions" / "2026" / "11" / "28"
    day.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "timestamp": "2026-11-28T10:00:00.000Z",
            "type": "session_meta",
            "payload": {"id": session_id, "timestamp": "2026-11-28T10:00:00.000Z", "cwd": str(cwd)},
        },
        {
            "timestamp": "2026-11-28T10:00:01.000Z",
            "type": "event_msg",
            "payload": {"type": "user_message", "message": prompt},
        },
    ]
    path = day / f"rollout-2026-11-28T10-00-00-{session_id}.jsonl"
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return session_id, path


def write_atomic(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    data = text.encode() if isinstance(text, str) else text
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -------------------------------------------------------------------------- daemon


#: environment variables that move an agent's sessions (or tracesd's own paths)
AGENT_ENV_PREFIXES = (
    "CLAUDE_",
    "CODEX_",
    "GEMINI_",
    "PI_",
    "CLINE_",
    "OPENCODE_",
    "CURSOR_",
    "VSCODE_",
    "TRACES",
    "XDG_",
)


def runtime_dir(home: Path) -> Path:
    """A short XDG_RUNTIME_DIR for `home` (Unix socket paths must stay under ~100 bytes,
    pytest's tmp paths do not); conftest removes it after the test."""
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"tdrt-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def db_path(home: Path) -> Path:
    """tracesd's database in a test HOME (the default: `$XDG_DATA_HOME/tracesd/traces.db`,
    with `isolated_env`'s XDG_DATA_HOME)."""
    return home / ".local" / "share" / "tracesd" / "traces.db"


def legacy_db_path(home: Path) -> Path:
    """Where tracesd kept its database before it had its own (the Traces CLI's legacy file)."""
    return home / ".traces" / "traces.db"


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose every path points into `home` (the runtime dir near it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(AGENT_ENV_PREFIXES)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_RUNTIME_DIR=str(runtime_dir(home)),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def tracesd(home: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    """Run the `tracesd` CLI to completion."""
    return subprocess.run(
        [sys.executable, "-m", "tracesd", *args],
        env=env or isolated_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


class Daemon:
    """A real `tracesd run` subprocess with JSON logs collected from stderr."""

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        """`prefix`: a command that execs the daemon's command line given after it
        (`unshare -Ur ...`), so that `proc.pid` is still the daemon's."""
        self.home = home
        self.log_path = home.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tracesd", "run", "--log-format", "json", *args],
            env=env or isolated_env(home),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def db(self) -> Path:
        return db_path(self.home)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return log_events(self.log_path, name)

    def wait_for_event(
        self, name: str, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(name):
                if where(event):
                    return event
            assert self.proc.poll() is None, f"daemon exited:\n{self.log_path.read_text()}"
            time.sleep(0.02)
        raise AssertionError(f"no {name} event in {timeout}s:\n{self.log_path.read_text()}")

    def wait_ready(self) -> None:
        self.wait_for_event("scan.finished", where=lambda e: e.get("reason") == "startup")

    def row(self, trace_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = query(self.db, "SELECT * FROM traces WHERE id = ?", trace_id)
            if found:
                return found[0]
            assert self.proc.poll() is None, f"daemon exited:\n{self.log_path.read_text()}"
            time.sleep(0.02)
        raise AssertionError(f"trace {trace_id} not captured:\n{self.log_path.read_text()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


class ServerProcess:
    """A real `tracesd server` subprocess with JSON logs collected from stderr."""

    def __init__(self, home: Path, *args: str, env: dict[str, str]) -> None:
        self.log_path = home.parent / f"server-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracesd", "server", "--log-format", "json", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return log_events(self.log_path, name)

    def wait_started(self, timeout: float = 20.0) -> int:
        """The port it listens on, once it logged server.started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.events("server.started")
            if started:
                return int(started[0]["port"])
            assert self.proc.poll() is None, self.log_path.read_text()
            time.sleep(0.02)
        raise AssertionError(f"no server.started in {timeout}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def log_events(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON log events in a process's log file (all, or those named `name`)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and (name is None or event.get("event") == name):
            out.append(event)
    return out


def query(db: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(sqliteuri.read_only(db), uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def processes_with(marker: str) -> Iterator[int]:
    """PIDs whose command line contains `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            yield int(entry.name)


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "") -> T:
    """Poll `predicate` every 50 ms until it answers something truthy, and answer that;
    fail after `timeout` seconds (generous: the suite runs beside another)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.05)


def sync_config(
    home: Path,
    url: str,
    *,
    interval_s: float = 0.5,
    max_backoff_s: float = 0.5,
    scope: str = "all",
    extra: str = "",
    key: str = "sk-e2e-KEY-9876",
) -> dict[str, str]:
    """A config syncing to `url` (every 0.5 s and scope "all" unless told), and the daemon's
    environment with the API key `key`."""
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[sync]\napi_url = "{url}"\nscope = "{scope}"\ninterval_s = {interval_s}\n'
        f"max_backoff_s = {max_backoff_s}\n{extra}"
    )
    return isolated_env(home, TRACES_API_KEY=key)
