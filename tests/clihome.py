"""A temp HOME with both tools in it: the pinned real Traces CLI and tracesd.

`TracesCli` runs the binary as a user would, in `env -i PATH=/usr/bin:/bin HOME=<home>
TERM=dumb` (and with no network at all where `unshare -rn` works; `list` and `show` make no
connection anyway, see docs/traces-cli-0.6.31.md), with a timeout. Paths are the ones the
contract names (INTERFACE.md 2, 5, 5b): tracesd's own database under
`$XDG_DATA_HOME/tracesd/` (XDG_DATA_HOME unset, so `~/.local/share/tracesd/`), the CLI's
under `~/.local/share/traces/` unless the legacy `~/.traces/traces.db` exists.

The session writers make sessions the CLI lists: a Claude transcript needs an assistant
line (the CLI drops one without after 10 minutes), and its mtime orders it among the
agent's sessions (the CLI keeps the 10 newest per agent).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers import (
    claude_session,
    codex_session,
    fixture_home,
    make_repo,
    query,
    tracesd,
    write_atomic,
)

T = TypeVar("T")

CLI_PATH = "/usr/bin:/bin"
CLI_TIMEOUT_S = 60.0
#: how long the tests give tracesd to do what the contract says it does "within 2 s"
DEADLINE_S = 20.0
LOCAL_DATABASE = "Local database"  # the one `traces doctor` check judged (the others need network)


def tracesd_db(home: Path) -> Path:
    """tracesd's own database by default (INTERFACE 2), for a HOME without XDG_DATA_HOME."""
    return home / ".local" / "share" / "tracesd" / "traces.db"


def cli_default_db(home: Path) -> Path:
    """The CLI's database when no legacy file exists (docs/traces-cli-0.6.31.md (a))."""
    return home / ".local" / "share" / "traces" / "traces.db"


def legacy_db(home: Path) -> Path:
    return home / ".traces" / "traces.db"


@functools.cache
def _no_network_prefix() -> tuple[str, ...]:
    """`unshare -rn` when this machine allows it (a network namespace with nothing up)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    return (unshare, "-rn") if probe.returncode == 0 else ()


class TracesCli:
    """The real Traces CLI in one HOME; offline, or pointed at the Traces API at `api`
    (TRACES_HTTP_URL, TRACES_API_URL and TRACES_URL; the CLI then keeps its database in a
    file named after that URL, docs/traces-cli-0.6.31.md (f))."""

    def __init__(self, binary: Path, home: Path, *, api: str | None = None) -> None:
        self.binary, self.home, self.api = binary, home, api

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(args, env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The CLI running in the background (`share --follow`), its output piped."""
        return subprocess.Popen(
            self._argv(args, None),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _argv(self, args: Sequence[str], env: dict[str, str] | None) -> list[str]:
        environ = {"PATH": CLI_PATH, "HOME": str(self.home), "TERM": "dumb"}
        if self.api is not None:
            environ.update(TRACES_HTTP_URL=self.api, TRACES_API_URL=self.api, TRACES_URL=self.api)
        environ.update(env or {})
        return [
            *(_no_network_prefix() if self.api is None else ()),
            "env",
            "-i",
            *(f"{k}={v}" for k, v in environ.items()),
            str(self.binary),
            *args,
        ]

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        done = self.run(*args, "--json", env=env)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise AssertionError(
                f"traces {' '.join(args)} --json -> {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            ) from None

    def list(self, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """`traces list --json`: what it lists (it also rescans and may prune its DB)."""
        answer = self.json("list", env=env)
        assert answer.get("ok") is True, answer
        traces: list[dict[str, Any]] = answer["data"]["traces"]
        return traces

    def show(self, trace_id: str) -> dict[str, Any]:
        answer = self.json("show", trace_id)
        assert answer.get("ok") is True, answer
        trace: dict[str, Any] = answer["data"]["trace"]
        return trace

    def status_path(self) -> Path:
        """The database path `traces status` prints (it creates nothing)."""
        done = self.run("status")
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            if line.strip().startswith("Path:"):
                return Path(line.split(":", 1)[1].strip())
        raise AssertionError(f"no Path: line in traces status:\n{done.stdout}")

    def doctor_local_database(self) -> dict[str, Any]:
        """`traces doctor --json`'s "Local database" check (exit 1 offline is expected)."""
        checks = self.json("doctor")["checks"]
        [check] = [c for c in checks if c.get("name") == LOCAL_DATABASE]
        result: dict[str, Any] = check
        return result

    def db(self) -> Path:
        """The file the CLI uses now, by its own rules (no env overrides here)."""
        return legacy_db(self.home) if legacy_db(self.home).exists() else cli_default_db(self.home)

    def rows(self, db: Path | None = None) -> dict[str, dict[str, Any]]:
        """Every row of the CLI's `traces` table, by id (read-only)."""
        return {r["id"]: r for r in query(db or self.db(), "SELECT * FROM traces")}


# -- tracesd --------------------------------------------------------------------------------


def tracesd_ok(home: Path, *args: str) -> Any:
    """Run a one-shot tracesd command that must exit 0; its JSON answer when it has --json."""
    done = tracesd(home, *args)
    assert done.returncode == 0, f"tracesd {' '.join(args)} -> {done.returncode}:\n{done.stderr}"
    return json.loads(done.stdout) if "--json" in args else done.stdout


def tracesd_listed(home: Path) -> dict[str, dict[str, Any]]:
    """Every trace `tracesd list --json` gives, by id."""
    answer = tracesd_ok(home, "list", "--json", "--limit", "100000")
    traces = answer["traces"] if isinstance(answer, dict) else answer
    return {t["id"]: t for t in traces}


def tracesd_rows(home: Path) -> dict[str, dict[str, Any]]:
    """Every row of tracesd's own database at its contract path (empty when it is not there)."""
    return {r["id"]: r for r in query(tracesd_db(home), "SELECT * FROM traces")}


def private_objects(db: Path) -> list[str]:
    """tracesd's own tables and triggers (`tracesd_*`) in a database (INTERFACE 5)."""
    sql = (
        "SELECT name FROM sqlite_master WHERE name LIKE 'tracesd%' AND type IN ('table', 'trigger')"
    )
    rows = query(db, sql)
    return sorted(r["name"] for r in rows)


def user_version(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def wait_for(what: str, check: Callable[[], T | None], timeout: float = DEADLINE_S) -> T:
    """Poll `check` until it answers something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


# -- sessions the CLI lists ------------------------------------------------------------------


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _age(path: Path, mtime: float | None) -> None:
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def claude(
    home: Path, cwd: Path, prompt: str, *, mtime: float | None = None, session_id: str | None = None
) -> str:
    answer = {
        "type": "assistant",
        "cwd": str(cwd),
        "message": {"role": "assistant", "content": [{"type": "text", "text": f"Done: {prompt}"}]},
        "timestamp": "2026-11-28T10:00:05.000Z",
    }
    sid, path = claude_session(home, cwd, prompt, session_id=session_id, extra_lines=[answer])
    _age(path, mtime)
    return sid


def claude_continue(home: Path, cwd: Path, session_id: str, prompt: str) -> None:
    """The user comes back to a Claude session: a prompt and an answer in its transcript, and
    the prompt in `~/.claude/history.jsonl`, as Claude Code writes them (the history line is
    what tells the CLI that Claude's sources changed: appending to a transcript does not
    change its directory's mtime)."""
    project = home / ".claude" / "projects" / str(cwd).replace("/", "-").replace(".", "-")
    now = int(time.time() * 1000)
    lines = [
        {"type": "user", "message": {"role": "user", "content": prompt}},
        {"type": "assistant", "message": {"role": "assistant", "content": f"Done: {prompt}"}},
    ]
    stamp = {"cwd": str(cwd), "sessionId": session_id, "timestamp": _iso(now)}
    with (project / f"{session_id}.jsonl").open("a") as f:
        f.writelines(json.dumps({**line, **stamp}) + "\n" for line in lines)
    entry = {
        "display": prompt,
        "pastedContents": {},
        "timestamp": now,
        "project": str(cwd),
        "sessionId": session_id,
    }
    with (home / ".claude" / "history.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def codex(home: Path, cwd: Path, prompt: str, *, mtime: float | None = None) -> str:
    sid, path = codex_session(home, cwd, prompt)
    _age(path, mtime)
    return sid


def pi(home: Path, cwd: Path, prompt: str, *, mtime: float | None = None) -> str:
    sid = str(uuid.uuid4())
    folder = home / ".pi" / "agent" / "sessions" / f"--{str(cwd).strip('/').replace('/', '-')}--"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "type": "session",
            "version": 3,
            "id": sid,
            "timestamp": _iso(1795860000000),
            "cwd": str(cwd),
        },
        {
            "type": "message",
            "id": "a1",
            "parentId": None,
            "timestamp": _iso(1795860001000),
            "message": {
                "role": "user",
                "content": [{"type": "text", "text": prompt}],
                "timestamp": 1795860001000,
            },
        },
        {
            "type": "message",
            "id": "a2",
            "parentId": "a1",
            "timestamp": _iso(1795860002000),
            "message": {
                "role": "assistant",
                "content": [{"type": "text", "text": "Done."}],
                "timestamp": 1795860002000,
            },
        },
    ]
    path = folder / f"2026-11-28T10-00-00-000Z_{sid}.jsonl"
    write_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))
    _age(path, mtime)
    return sid


def amp(home: Path, cwd: Path, prompt: str, *, mtime: float | None = None) -> str:
    tid = f"T-{uuid.uuid4()}"
    folder = home / ".local" / "share" / "amp" / "threads"
    folder.mkdir(parents=True, exist_ok=True)
    thread = {
        "v": 1,
        "id": tid,
        "created": 1795860000000,
        "messages": [
            {
                "role": "user",
                "messageId": 0,
                "content": [{"type": "text", "text": prompt}],
                "meta": {"sentAt": 1795860001000},
            },
            {
                "role": "assistant",
                "messageId": 1,
                "content": [{"type": "text", "text": "Done."}],
                "state": {"type": "complete", "stopReason": "end_turn"},
            },
        ],
        "env": {"initial": {"trees": [{"displayName": cwd.name, "uri": cwd.as_uri()}]}},
    }
    path = folder / f"{tid}.json"
    write_atomic(path, json.dumps(thread))
    _age(path, mtime)
    return tid


WRITERS: dict[str, Callable[..., str]] = {
    "claude-code": claude,
    "codex": codex,
    "pi": pi,
    "amp": amp,
}


_KV = "key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB"  # a VS Code key-value table


def cursor_composer(home: Path, cwd: Path, prompt: str) -> str:
    """A Cursor IDE composer whose folder is recorded only in its first bubble's
    `workspaceUris` (no `workspaceIdentifier`, no workspace listing it)."""
    cid = str(uuid.uuid4())
    store = home / ".config" / "Cursor" / "User" / "globalStorage" / "state.vscdb"
    store.parent.mkdir(parents=True, exist_ok=True)
    composer = {
        "_v": 17,
        "composerId": cid,
        "name": prompt,
        "createdAt": 1795860000000,
        "lastUpdatedAt": 1795860060000,
        "fullConversationHeadersOnly": [
            {"bubbleId": "u1", "type": 1},
            {"bubbleId": "a1", "type": 2},
        ],
    }
    bubbles = {
        "u1": {
            "_v": 3,
            "type": 1,
            "bubbleId": "u1",
            "text": prompt,
            "workspaceUris": [cwd.as_uri()],
        },
        "a1": {"_v": 3, "type": 2, "bubbleId": "a1", "text": "Done."},
    }
    rows = {f"composerData:{cid}": json.dumps(composer)}
    rows.update({f"bubbleId:{cid}:{b}": json.dumps(v) for b, v in bubbles.items()})
    with contextlib.closing(sqlite3.connect(store)) as conn:
        for table in ("ItemTable", "cursorDiskKV"):
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_KV})")
        conn.executemany("INSERT INTO cursorDiskKV VALUES (?, ?)", rows.items())
        conn.commit()
    return cid


# -- an earlier tracesd's file ----------------------------------------------------------------

EARLIER = Path(__file__).parent / "fixtures" / "tracesd-earlier.sql"
#: the traces in EARLIER: the Claude session in ~/src/app, and the one whose file is gone
EARLIER_REPO_SESSION = "01d01d00-1111-4222-8333-444455556666"
EARLIER_GONE_SESSION = "9011e000-1111-4222-8333-444455556666"


def earlier_tracesd_home(home: Path) -> Path:
    """What an earlier tracesd left: its database at ~/.traces/traces.db (its schema 4) over
    the sessions it had read (the fixtures and ~/src/app's session); returns that file."""
    fixture_home(home)
    repo = make_repo(
        home / "src" / "app", branch="feature/old", remote="git@github.com:Org/App.git"
    )
    claude(home, repo, "Old capture in a repo", session_id=EARLIER_REPO_SESSION)
    path = legacy_db(home)
    path.parent.mkdir(mode=0o700)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(EARLIER.read_text().replace("@HOME@", str(home)))
    return path
