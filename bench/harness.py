"""What every benchmark stands on: an isolated workspace, real git repositories, a real
`tracesd run` with its JSON log events, and read-only views of its database."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.measure import BenchError, stop_process

#: the console script next to the interpreter running the benchmarks (the venv's)
TRACESD = str(Path(sys.executable).with_name("tracesd"))
#: environment variables of the real user that could steer tracesd or git
_LEAKY_ENV = (
    "XDG_",
    "TRACES",
    "CLAUDE_",
    "CODEX_",
    "GEMINI_",
    "PI_",
    "CLINE_",
    "OPENCODE_",
    "CURSOR_",
    "VSCODE_",
    "GIT_",
)
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

Event = dict[str, Any]


@dataclass(frozen=True)
class Options:
    #: --quick was given (it shortens the idle window; recorded with the results)
    quick: bool = False
    seed: int = 1
    #: how long the idle benchmark watches the daemon
    idle_window_s: float = 60.0


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- workspace


class Stops:
    """A process or thread a `with` block stops on the way out."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError


class Workspace:
    """A directory under /tmp with its own HOME; removed at the end unless something failed
    (an exception, or `keep` set by a failed check), in which case its path is printed."""

    def __init__(self, name: str) -> None:
        if not os.path.exists(TRACESD):
            raise BenchError(f"{TRACESD} not found: run the benchmarks with the venv's python")
        self.root = Path(tempfile.mkdtemp(prefix=f"tracesd-bench-{name}-", dir="/tmp"))
        self.home = self.root / "home"
        self.home.mkdir()
        runtime = self.root / "run"
        runtime.mkdir(mode=0o700)
        self.env = isolated_env(self.home, runtime)
        self.git_env = {**self.env, **_GIT_IDENTITY}
        self.db = self.home / ".local" / "share" / "tracesd" / "traces.db"
        self.keep = False

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self.keep:
            say(f"kept {self.root} for inspection")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def isolated_env(home: Path, runtime: Path) -> dict[str, str]:
    """The current environment with every per-user path pointing into `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_RUNTIME_DIR=str(runtime),
    )
    return env


# ------------------------------------------------------------------------------- git


@dataclass(slots=True)
class Repo:
    path: Path
    branch: str
    remote: str
    #: the commit HEAD points at now
    head: str


def git(cwd: Path, *args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


#: what the daemon asks git about a repository (tracesd.git.context), for the floors
GIT_QUERIES = (
    ("config", "-z", "--get-regexp", r"^(branch\..*\.remote|remote\..*\.url|url\..*\.insteadof)$"),
    ("symbolic-ref", "--quiet", "--short", "HEAD"),
    ("rev-parse", "--verify", "--quiet", "HEAD"),
)


def git_queries(cwd: Path, env: Mapping[str, str]) -> list[str]:
    """The daemon's three git queries, one after the other, as plain subprocesses."""
    return [
        subprocess.run(
            ["git", *query], cwd=cwd, env=env, capture_output=True, text=True
        ).stdout.strip()
        for query in GIT_QUERIES
    ]


def make_repos(parent: Path, count: int, env: Mapping[str, str]) -> list[Repo]:
    """`count` repositories with one commit and an origin; every third is on a feature branch."""
    repos: list[Repo] = []
    for i in range(count):
        path = parent / f"repo{i}"
        path.mkdir(parents=True)
        branch = f"feature/bench-{i}" if i % 3 == 0 else "main"
        remote = f"https://github.com/bench/repo{i}"  # canonical: stored as it is
        git(path, "init", "--quiet", "--initial-branch", branch, env=env)
        git(path, "remote", "add", "origin", remote, env=env)
        git(path, "commit", "--quiet", "--allow-empty", "--message", "initial", env=env)
        repos.append(Repo(path, branch, remote, git(path, "rev-parse", "HEAD", env=env)))
    return repos


def commit(repo: Repo, env: Mapping[str, str]) -> str:
    git(repo.path, "commit", "--quiet", "--allow-empty", "--message", "change", env=env)
    repo.head = git(repo.path, "rev-parse", "HEAD", env=env)
    return repo.head


# ---------------------------------------------------------------------------- daemon


class Daemon(Stops):
    """`tracesd run --log-format json` as a subprocess; its log events as they arrive.

    A thread reads stderr line by line (so the daemon never blocks on a full pipe), keeps
    every event and copies the raw lines to `log_path`. Leaving the `with` block stops the
    daemon: SIGTERM, then SIGKILL if it is still running after the grace period.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._events: list[Event] = []
        self._eof = False
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [TRACESD, "run", "--log-format", "json"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name="daemon-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        stop_process(self.proc, grace_s)
        self._reader.join(5.0)
        self._log.close()

    def wait_for(
        self, name: str, where: Callable[[Event], bool] = bool, *, timeout_s: float = 30.0
    ) -> Event:
        """The first event called `name` that satisfies `where`, waiting for it if needed."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if event.get("event") == name and where(event):
                        return event
                seen = len(self._events)
                if self._eof:
                    raise BenchError(
                        f"tracesd exited ({self.proc.wait()}) before logging {name}: "
                        f"{' / '.join(self._last_words())} (log: {self.log_path})"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"tracesd logged no {name} in {timeout_s:g}s: {self.log_path}")
                self._changed.wait(remaining)

    def events(self, name: str | None = None) -> list[Event]:
        """Every event logged so far (called `name`, if given), oldest first."""
        with self._changed:
            return [e for e in self._events if name is None or e.get("event") == name]

    def _last_words(self, count: int = 3) -> list[str]:
        """The last errors it logged, and stray lines (a traceback before logging was set up)."""
        words: list[str] = []
        for event in self._events:
            if event["event"] == "non-json":
                words.append(event["line"].strip())
            elif event.get("level") in ("error", "critical"):
                errors = event.get("exception") or [{}]
                detail = f"{errors[-1].get('exc_type', '')}: {errors[-1].get('exc_value', '')}"
                words.append(f"{event['event']} {detail}".rstrip(": "))
        return words[-count:]

    def _read(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for line in stream:
            self._log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"event": "non-json", "line": line.decode("utf-8", "replace")}
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()


# --------------------------------------------------------------------------- sqlite


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)


#: what a captured row must say: directory, git remote, branch, commit
GitRow = tuple[str, str, str, str]


def wrong_rows(db: Path, expected: Mapping[str, GitRow]) -> list[str]:
    """Traces (by id) whose row is missing or differs from `expected`, described."""
    conn = read_only(db)
    try:
        sql = "SELECT id, directory, git_remote_url, git_branch, git_ref FROM traces"
        stored = {row[0]: tuple(row[1:]) for row in conn.execute(sql)}
    finally:
        conn.close()
    return [
        f"{trace_id}: {stored.get(trace_id)} != {want}"
        for trace_id, want in expected.items()
        if stored.get(trace_id) != want
    ]
