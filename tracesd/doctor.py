"""`tracesd doctor`: what is wrong, and how to fix it. One check per line.

Every check answers ok, warn or fail, with what it saw and, when something is wrong, the
fix. `doctor` exits non-zero only when a check fails; a warning (no agent installed yet,
sync off) is worth knowing but not broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracesd import private, sqliteuri, terminal
from tracesd.capture.adapters import build_adapters
from tracesd.capture.scan import discover
from tracesd.config import Config
from tracesd.errors import NotRunning, StoreCorrupt, SyncError, TracesdError
from tracesd.sqliteerrors import Fault, fault
from tracesd.store import migrations, owner, quarantine, takeover
from tracesd.store.dbfile import SIDECARS
from tracesd.store.lock import lock_path
from tracesd.tracescli import database as tracescli

OK, WARN, FAIL = "ok", "warn", "fail"
#: stop counting directories for the inotify check past this many
_DIRECTORY_BUDGET = 500_000
_CORRUPT_FIX = (
    "restart tracesd (`tracesd run` or its service): it moves the file aside and rebuilds"
    " the database from the session files"
)
_SYSCTL_FIX = (
    "sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512"
    " (persist it in /etc/sysctl.d/90-tracesd.conf)"
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def run(config: Config) -> list[Check]:
    return [
        *_agents(config),
        _git(config),
        _database(config),
        *_earlier_install(config),
        _traces_cli(config),
        _permissions(config),
        _daemon(config),
        _inotify(config),
        *_backend(config),
    ]


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.status != FAIL for c in checks), "checks": [asdict(c) for c in checks]}


def as_text(checks: Iterable[Check]) -> list[str]:
    """One line a check (two with its fix when it is not ok), each made terminal-safe."""
    lines = []
    for check in map(terminal.value, checks):
        mark = {OK: "ok  ", FAIL: "FAIL"}.get(check.status, "warn")
        line = f"{mark}  {check.name:<20} {check.detail}"
        if check.fix and check.status != OK:
            line += f"\n      {'':<20} fix: {check.fix}"
        lines.append(line)
    return lines


def _agents(config: Config) -> list[Check]:
    checks = []
    for adapter in build_adapters(config):
        found = [root for root in adapter.roots() if os.path.isdir(root)]
        if found:
            sessions = len(discover([adapter], found))
            count = f"{sessions} session files" if sessions else "no sessions yet"
            checks.append(Check(f"agent {adapter.agent_id}", OK, f"{count} in {', '.join(found)}"))
        else:
            checks.append(
                Check(
                    f"agent {adapter.agent_id}",
                    WARN,
                    f"no sessions yet (looked in {', '.join(adapter.roots())})",
                    "nothing to do if you do not use it; otherwise set its env variable"
                    f' or [agents.roots] {adapter.agent_id} = "..."',
                )
            )
    return checks


def _git(config: Config) -> Check:
    git = shutil.which("git", path=config.environ.get("PATH"))
    if git is None:
        return Check("git", FAIL, "git is not on PATH", "install git: no git, no git context")
    try:
        version = subprocess.run(
            [git, "--version"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("git", FAIL, f"{git} does not run ({exc})", "reinstall git")
    return Check("git", OK, f"{version} ({git})")


def _database(config: Config) -> Check:
    path = config.storage.db_path
    check = _database_file(path)
    moved = quarantine.quarantined(path)
    if moved and check.status == OK:
        detail = f"{check.detail}; a corrupt database was moved aside: {', '.join(map(str, moved))}"
        return Check("database", WARN, detail, quarantine.recovery_hint(moved[-1]))
    return check


def _database_file(path: Path) -> Check:
    if path.is_dir():
        return Check(
            "database", FAIL, f"{path} is a directory", "move it away, or set [storage] db_path"
        )
    if not path.exists():
        return Check("database", WARN, f"{path} does not exist yet", "it is created on first start")
    expected = migrations.SCHEMA_VERSION
    try:
        quarantine.check_header(path)
        with sqlite3.connect(sqliteuri.read_only(path), uri=True, timeout=2) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > expected:
                return _too_new(conn, path, version)
            quarantine.quick_check(conn, path)
            if version < expected:
                fix = f"upgraded to {expected} when tracesd starts"
                return Check("database", WARN, f"{path}: tracesd schema {version}", fix)
            traces = conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
    except StoreCorrupt as exc:
        return Check("database", FAIL, str(exc), _CORRUPT_FIX)
    except sqlite3.Error as exc:
        fix = (
            _CORRUPT_FIX
            if fault(exc) is Fault.CORRUPT
            else "try again; if it persists, check the file"
        )
        return Check("database", FAIL, f"{path} cannot be read: {exc}", fix)
    return Check("database", OK, f"{path}: tracesd schema {version}, {traces} traces")


def _too_new(conn: sqlite3.Connection, path: Path, version: int) -> Check:
    """Past our version: a newer tracesd's file (upgrade), or not ours at all (the Traces
    CLI numbers its own schema: no tracesd has its version)."""
    if migrations.too_new(conn, path, version).ours:
        detail = (
            f"{path}: schema {version}, newer than the {migrations.SCHEMA_VERSION} this"
            " tracesd knows (tracesd's own numbering)"
        )
        return Check("database", FAIL, detail, "upgrade tracesd")
    detail = (
        f"{path} is not tracesd's database: schema {version} in another program's"
        " numbering (the Traces CLI's?)"
    )
    return Check(
        "database", FAIL, detail, "set [storage] db_path to a file of tracesd's own, or remove it"
    )


def _earlier_install(config: Config) -> list[Check]:
    """An earlier tracesd's ~/.traces/traces.db not yet taken over (an earlier daemon still
    running on it, or the Traces CLI busy at the last start): say so, and what finishes it."""
    legacy = config.storage.legacy_path
    found = takeover.waiting(legacy)
    if found is None:
        return []
    adopted = " (the Traces CLI has adopted it)" if found is owner.Owner.ADOPTED else ""
    return [
        Check(
            "earlier database",
            WARN,
            f"{legacy} holds an earlier tracesd's traces{adopted}",
            "the next `tracesd run` or `tracesd scan` takes it over into"
            f" {config.storage.db_path}; stop any earlier tracesd still running on it first",
        )
    ]


def _traces_cli(config: Config) -> Check:
    """The Traces CLI's database: where, whether tracesd can fill it, how much of ours is in
    it and how much of that still waits for our git context. Reads only."""
    name = "traces cli"
    if not config.traces_cli.enabled:
        return Check(name, OK, "off ([traces_cli] enabled = false): its database is never touched")
    path = config.traces_cli.db_path or tracescli.locate(config.environ, config.home)
    own = config.storage.db_path
    if path.exists() and own.exists() and os.path.samefile(path, own):
        detail = f"{path} is tracesd's own database, where the Traces CLI keeps its own"
        return Check(name, WARN, detail, "leave [storage] db_path empty, or point it elsewhere")
    try:
        with tracescli.Connection(path, query_only=True) as conn:
            if not conn.has_git_columns():
                detail = f"{path} has no git columns (an older Traces CLI): left alone"
                return Check(name, WARN, detail, "update the Traces CLI")
            ours = _git_rows(own)
            theirs = conn.git_rows(list(ours))
    except tracescli.Missing:
        return Check(name, OK, f"no Traces CLI database at {path} (yet): nothing to fill")
    except (tracescli.CliDbError, sqlite3.Error) as exc:
        return Check(name, WARN, f"{path}: {exc}", "try again; if it persists, check the file")
    waiting = sum(
        1
        for trace_id, cli in theirs.items()
        if any(c is None and v is not None for c, v in zip(cli, ours[trace_id], strict=True))
    )
    detail = (
        f"{path}: {len(theirs)} of our {len(ours)} traces with git context are in it,"
        f" {waiting} of them still lack some of it"
    )
    if waiting:
        return Check(name, WARN, detail, "start tracesd: it fills them in within seconds")
    return Check(name, OK, detail)


def _git_rows(db: Path) -> dict[str, tuple[object, object, object]]:
    """Our traces that have git context, read-only."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(sqliteuri.read_only(db), uri=True, timeout=2)) as c:
        rows = c.execute(
            "SELECT id, git_remote_url, git_branch, git_ref FROM traces"
            " WHERE COALESCE(git_remote_url, git_branch, git_ref) IS NOT NULL"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _permissions(config: Config) -> Check:
    """The database holds prompts: it, SQLite's files beside it and the lock are 0600, and
    no one else may write the directory they are in (they could replace them)."""
    db = config.storage.db_path
    files = [db, *(db.with_name(db.name + end) for end in SIDECARS), lock_path(db)]
    modes = {path: mode for path in files if (mode := private.loose(path)) is not None}
    problems = [f"{path} is {oct(mode)}" for path, mode in modes.items()]
    fixes = [f"chmod 600 {' '.join(map(str, modes))}"] if modes else []
    try:
        directory = stat.S_IMODE(os.stat(db.parent).st_mode)
    except OSError:
        directory = 0
    if directory & 0o022:
        problems.append(f"{db.parent} is {oct(directory)}: others can replace files in it")
        fixes.append(f"chmod go-w {db.parent}")
    if problems:
        fixes.append("(tracesd also tightens the database files itself when it starts)")
        return Check("permissions", WARN, "; ".join(problems), " ".join(fixes))
    return Check("permissions", OK, f"the database files are private (0600) in {db.parent}")


def _daemon(config: Config) -> Check:
    from tracesd.status import wire
    from tracesd.status.socket import request  # aiohttp: `tracesd scan` and `list` never load it

    socket_path = config.status.socket_path
    try:
        status = wire.parse(asyncio.run(request(socket_path, "GET", "/status", timeout_s=5)))
    except NotRunning:
        return Check(
            "daemon",
            FAIL,
            f"no tracesd answers on {socket_path}",
            "start it: `tracesd service install` (at login, restarted) or `tracesd run`",
        )
    except TracesdError as exc:
        return Check("daemon", FAIL, f"{socket_path}: {exc}", "restart tracesd")
    degraded = status.watcher.degraded
    detail = f"pid {status.pid}, up {status.uptime_s:.0f} s, {status.traces.total} traces"
    if degraded:
        return Check("daemon", FAIL, f"{detail}; not watching {', '.join(degraded)}", _SYSCTL_FIX)
    return Check("daemon", OK, detail)


def _inotify(config: Config) -> Check:
    limits = Path("/proc/sys/fs/inotify")
    if not sys.platform.startswith("linux") or not limits.is_dir():
        return Check("inotify", OK, "not Linux: no inotify limits to check")
    watches = int((limits / "max_user_watches").read_text())
    instances = int((limits / "max_user_instances").read_text())
    directories = _count_directories(config)
    detail = (
        f"{directories} directories to watch; max_user_watches {watches}, instances {instances}"
    )
    if directories > watches * 0.8:
        return Check("inotify", FAIL, detail, _SYSCTL_FIX)
    if directories > watches * 0.5:
        return Check("inotify", WARN, detail, _SYSCTL_FIX)
    return Check("inotify", OK, detail)


def _count_directories(config: Config) -> int:
    count = 0
    for adapter in build_adapters(config):
        for root in adapter.roots():
            for _ in os.walk(root):  # each directory once (symlinked ones are not followed)
                count += 1
                if count > _DIRECTORY_BUDGET:
                    return count
    return count


def _backend(config: Config) -> list[Check]:
    sync = config.sync
    if not sync.enabled:
        return [Check("sync", WARN, "off: traces stay on this machine", "set [sync] api_url")]
    from tracesd.sync.client import BackendClient, open_session  # aiohttp only when needed

    async def probe() -> int:
        async with open_session() as session:
            return await BackendClient(session, sync.api_url, sync.api_key).check()

    try:
        status = asyncio.run(probe())
    except SyncError as exc:
        return [
            Check("backend", FAIL, f"{sync.api_url} unreachable: {exc}", "check [sync] api_url"),
        ]
    if status in (404, 405):
        fix = "check [sync] api_url: the base URL, without /v1/traces"
        return [Check("backend", FAIL, f"no Traces API at {sync.api_url} (HTTP {status})", fix)]
    reachable = Check("backend", OK, f"{sync.api_url} answers (HTTP {status})")
    if status in (401, 403):
        fix = "set the right key in TRACES_API_KEY or [sync] api_key_file"
        return [reachable, Check("api key", FAIL, f"refused (HTTP {status})", fix)]
    if status >= 300:
        return [reachable, Check("api key", WARN, f"not checked: the server answered {status}")]
    if not sync.api_key:
        return [reachable, Check("api key", WARN, "none set, and the server accepts that")]
    return [reachable, Check("api key", OK, "accepted")]
