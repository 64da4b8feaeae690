"""Taking over an earlier install's database: `~/.traces/traces.db`, where tracesd kept its
file before it had its own. The Traces CLI adopts any file at that path (its legacy
location): it migrates it to its own schema and prunes its rows, so tracesd's must leave.

Run before tracesd's database is opened (`tracesd run`, `scan`, `list`), under the earlier
file's instance lock (`<legacy>.lock`, see `store.lock`), so that two tracesd processes never
both do it and an earlier tracesd daemon still running on it is never robbed. Only a file
with tracesd's tables is touched (`owner`); the Traces CLI's own file, at any version, is
only ever opened read-only to look at its tables.

* **moved**: the CLI never touched it. Copied whole (SQLite's backup: the WAL comes along)
  to a temporary name beside our database, linked into place, then the earlier file and its
  `-wal`/`-shm` are unlinked, all while holding its write lock (a CLI that opened it in
  the meantime writes into an unlinked file, never into ours).
* **copied**: the CLI adopted it (its tables are there too). tracesd's rows are rebuilt at
  tracesd's schema of the time in a temporary file (`takeover_copy`), linked into place;
  then tracesd's tables, indexes and triggers are dropped from the CLI's file in one short
  transaction. The CLI's rows, columns and `user_version` stay as they are. Rows tracesd
  captured that the CLI has since pruned (or re-inserted without git context) are lost
  there: their `tracesd_files` entries are left behind, so the next scan reads those
  session files again and restores them.
* **finished**: our database already exists while the earlier file still has tracesd's
  tables (a crash after the link, the CLI busy at cleanup, a race with `tracesd scan`):
  whatever of it our database lacks is merged in (`INSERT OR IGNORE`), then the cleanup.

Every step is safe to repeat, so a crash anywhere leaves a state the next start completes.
When the CLI holds its write lock past the busy timeout the cleanup waits for a later start
(`store.takeover_deferred`); when done, `store.takeover` is logged once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from tracesd import sqliteuri
from tracesd.errors import AlreadyRunning, StoreError, TracesdError
from tracesd.safeopen import STORE_SIDE_FILES
from tracesd.store import owner, takeover_copy
from tracesd.store.lock import InstanceLock, lock_path
from tracesd.store.takeover_copy import Busy, fsync

log = structlog.get_logger("tracesd.takeover")

#: the temporary name of a database being built, beside ours
TEMP_SUFFIX = ".takeover"
#: how long the cleanup waits for the Traces CLI's write lock (its writes take well under
#: a second) before leaving it to the next start
_CLEAN_WAIT_S = 2.0
#: the indexes tracesd's schema step 4 put on `traces` (the Traces CLI has its own)
_TRACES_INDEXES = ("traces_git_remote_url", "traces_timestamp")


@dataclass(frozen=True, slots=True)
class Result:
    #: `moved`, `copied` or `finished` (see the module docstring)
    mode: str
    #: traces now in our database that came from the earlier file
    rows: int
    #: session files whose traces the CLI had pruned: read again by the next scan
    forgotten: int
    #: False while the earlier file still holds tracesd's tables (the CLI was busy)
    done: bool


def take_over(legacy: Path, db: Path, *, busy_timeout_s: float = 5.0) -> Result | None:
    """Take `legacy` over into `db` when it is tracesd's; None when there is nothing to do
    (or another tracesd is at it). Raises StoreError when it cannot be done."""
    if os.path.abspath(legacy) == os.path.abspath(db):
        return None
    if not _is_file(legacy):
        _remove_leftovers(legacy)
        return None
    if _owner(legacy, busy_timeout_s) not in (owner.Owner.TRACESD, owner.Owner.ADOPTED):
        return None  # the Traces CLI's own file: never opened for write
    lock = _lock(legacy, busy_timeout_s)
    if lock is None:
        return None
    try:
        result = _take_over(legacy, db, busy_timeout_s)
    except Busy as exc:
        log.warning("store.takeover_deferred", path=str(legacy), reason=str(exc))
        return None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot take over the earlier database {legacy}: {exc}") from None
    except OSError as exc:
        raise StoreError(
            f"cannot take over the earlier database {legacy}: {exc.strerror} ({exc.filename})"
        ) from None
    finally:
        lock.release()
        _remove_leftovers(legacy, took_over=True)  # the lock file was ours: so is the dir
    if result is not None and result.done:
        fields = {"from": str(legacy), "to": str(db), "mode": result.mode, "rows": result.rows}
        log.info("store.takeover", forgotten=result.forgotten, **fields)
    elif result is not None:
        log.warning(
            "store.takeover_deferred",
            path=str(legacy),
            reason="the Traces CLI holds its write lock",
            hint="tracesd's tables are removed from it at the next start",
        )
    return result


def waiting(legacy: Path) -> owner.Owner | None:
    """An earlier tracesd's file still at `legacy` (TRACESD, or ADOPTED by the Traces CLI),
    looked at without changing it; None when there is none."""
    if not _is_file(legacy):
        return None
    found = _owner(legacy, 2.0)
    return found if found in (owner.Owner.TRACESD, owner.Owner.ADOPTED) else None


def _lock(legacy: Path, wait_s: float) -> InstanceLock | None:
    """The earlier file's instance lock: another tracesd taking it over is waited for (it
    is quick); an earlier tracesd daemon still running on it is left alone (None)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return InstanceLock.acquire(legacy)
        except AlreadyRunning as exc:
            if time.monotonic() > deadline:
                log.warning(
                    "store.takeover_deferred",
                    path=str(legacy),
                    reason=str(exc),
                    hint="an earlier tracesd daemon runs on it: stop it (the next start of"
                    " this one takes the file over)",
                )
                return None
        time.sleep(0.05)


def _take_over(legacy: Path, db: Path, busy_timeout_s: float) -> Result | None:
    kind = _owner(legacy, busy_timeout_s)  # again, now that we hold the lock
    if kind not in (owner.Owner.TRACESD, owner.Owner.ADOPTED):
        return None
    _private_dir(db.parent)
    temp = db.with_name(db.name + TEMP_SUFFIX)
    _unlink_all(temp)  # a takeover that crashed before its link
    if os.path.lexists(db):
        if not _is_file(db):
            return None  # opening it says what is wrong
        rows, forgotten = takeover_copy.merge(legacy, db, busy_timeout_s, everything=False)
        return Result("finished", rows, forgotten, _clean(legacy, _CLEAN_WAIT_S))
    if kind is owner.Owner.TRACESD:
        with _write_locked(legacy, busy_timeout_s) as old:
            if owner.owner(old) is owner.Owner.TRACESD:
                rows = takeover_copy.backup(legacy, temp, busy_timeout_s)
                _link(temp, db)
                _unlink_all(legacy, db_last=True)
                return Result("moved", rows, 0, done=True)
        # adopted by the CLI between our look and its lock: copy out, below
    rows, forgotten = takeover_copy.rebuild(legacy, temp, busy_timeout_s)
    _link(temp, db)
    return Result("copied", rows, forgotten, _clean(legacy, _CLEAN_WAIT_S))


# ------------------------------------------------------------------------ cleaning up


def _clean(legacy: Path, busy_timeout_s: float) -> bool:
    """tracesd's objects out of the earlier file: the whole file when only tracesd used it,
    else its tables, indexes and triggers in one transaction. False when the CLI held its
    write lock throughout (the next start tries again)."""
    try:
        with _write_locked(legacy, busy_timeout_s) as conn:
            kind = owner.owner(conn)
            if kind is owner.Owner.TRACESD:
                _unlink_all(legacy, db_last=True)
            elif kind is owner.Owner.ADOPTED:
                objects = conn.execute(
                    "SELECT type, name FROM sqlite_master"
                    " WHERE type IN ('trigger', 'index', 'table')"
                    f" AND (name LIKE 'tracesd\\_%' ESCAPE '\\' OR name IN {_TRACES_INDEXES})"
                    " ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'index' THEN 1 ELSE 2 END"
                ).fetchall()
                for kind_name, name in objects:
                    conn.execute(f'DROP {kind_name.upper()} IF EXISTS "{name}"')
    except Busy:
        return False
    return True


@contextlib.contextmanager
def _write_locked(path: Path, busy_timeout_s: float) -> Iterator[sqlite3.Connection]:
    """A connection to `path` inside BEGIN IMMEDIATE, committed at the end; Busy when
    another process held the write lock past the timeout."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise Busy(f"{path} stayed locked: {exc}") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


# --------------------------------------------------------------------------- files


def _owner(path: Path, busy_timeout_s: float) -> owner.Owner:
    """Whose file it is, looked at read-only, never changing a byte of it nor adding a file
    beside it: without a WAL beside it the file is complete, and read as immutable (a
    read-only open of a WAL database would create its `-wal` and `-shm`)."""
    wal = path.with_name(path.name + "-wal")
    target = (
        sqliteuri.read_only(path) if wal.exists() else sqliteuri.uri(path, "mode=ro&immutable=1")
    )
    try:
        conn = sqlite3.connect(target, uri=True, timeout=busy_timeout_s)
    except sqlite3.Error:
        return owner.Owner.FOREIGN
    try:
        return owner.owner(conn)
    except sqlite3.Error:
        return owner.Owner.FOREIGN  # not a database, or locked: not ours to touch now
    finally:
        conn.close()
        # Another tracesd may have moved the file away while we looked: the `-wal` and
        # `-shm` our look made beside a file that is gone are ours, and orphans.
        _remove_orphan_sidecars(path)


def _link(temp: Path, db: Path) -> None:
    """`temp` becomes `db`, durably; never over a file someone made meanwhile."""
    fsync(temp)
    try:
        os.link(temp, db)
    except FileExistsError:
        os.unlink(temp)
        raise Busy(f"{db} appeared meanwhile: merged at the next start") from None
    os.unlink(temp)
    fsync(db.parent)


def _unlink_all(path: Path, *, db_last: bool = False) -> None:
    """A database and the files beside it; the database last, so a crash between leaves
    a file that is still whole (its WAL was copied with it)."""
    names = [path.with_name(path.name + end) for end in STORE_SIDE_FILES]
    removed = False
    for name in (*names, path) if db_last else (path, *names):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
            removed = True
    if removed:
        fsync(path.parent)


def _remove_leftovers(legacy: Path, *, took_over: bool = False) -> None:
    """What an earlier tracesd left in ~/.traces once its database is gone: a lock file no
    one holds, a socket no one answers; then the directory, if that left it empty."""
    if os.path.lexists(legacy):
        return
    removed = _remove_orphan_sidecars(legacy) or took_over
    if os.path.lexists(lock_path(legacy)):
        with contextlib.suppress(TracesdError):
            InstanceLock.acquire(legacy).release()  # released: removed
            removed = True
    sock = legacy.with_name("tracesd.sock")
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(sock).st_mode) and not _answers(sock):
            os.unlink(sock)
            removed = True
    if removed:
        with contextlib.suppress(OSError):
            legacy.parent.rmdir()  # only when empty: anything else there is not ours


def _remove_orphan_sidecars(path: Path) -> bool:
    """`-wal`, `-shm` and `-journal` beside a database that is gone (the Traces CLI never
    creates a file at the legacy path, so nobody is about to): removed. True if any was."""
    if os.path.lexists(path):
        return False
    removed = False
    for end in STORE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.with_name(path.name + end))
            removed = True
    return removed


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock))
        except OSError as exc:
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    return True


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
