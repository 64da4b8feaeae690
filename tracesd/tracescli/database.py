"""The real Traces CLI's database (INTERFACE 5b): located by the CLI's rules, enriched with
the git context tracesd captured, never owned.

`locate()` is the CLI's own path function (`fc()` in 0.6.31; docs/traces-cli-0.6.31.md (a)),
ported exactly: `$TRACES_EVENTSTORE` (trimmed; blank is unset; relative to the CLI's data
directory); else, for the production endpoint, `~/.traces/traces.db` or `~/.traces/events.db`
if one exists, else `<data dir>/traces/traces.db`; for another `$TRACES_HTTP_URL` (one
trailing `/` removed, nothing else), `traces-staging.db` or `traces.<sha256[:12]>.db` in the
data directory, never the legacy path.

The CLI's share state is read from it too (`shares`): a row is shared when its
`remote_url` (the share URL; `shared_url` in layouts from before the CLI renamed it) is set.

The rest is what may be done to the file, in a worker thread, one short connection per
pass (`Connection`): it is opened `mode=rw` (a missing file is never created), a special
file is refused before SQLite opens it (a FIFO would block the thread), nothing is changed
but NULL git columns of existing rows, and each write is one short transaction
(BEGIN IMMEDIATE ... COMMIT over at most `BATCH` rows) with a busy timeout of a few
milliseconds: when the CLI holds the lock, `Busy` is raised at once and the caller retries
later, so the CLI (busy_timeout 5 s, gives up after ~15 s) never waits for us for long.
Journal mode, schema and `user_version` are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tracesd import sqliteuri
from tracesd.safeopen import NotRegular, check_store
from tracesd.sqliteerrors import Fault, fault

PRODUCTION = "https://actions.traces.com"
STAGING = "https://greedy-caterpillar-947.convex.site"
#: the git columns we fill, in this order everywhere
GIT_COLUMNS = ("git_remote_url", "git_branch", "git_ref")
#: the column holding a row's share URL, newest layout first (the first one present counts)
SHARE_COLUMNS = ("remote_url", "shared_url")
#: rows per UPDATE transaction (the write lock is held for one such batch)
BATCH = 250
#: ids per IN (...) of a read
READ_CHUNK = 500
#: how long one statement waits for the CLI's lock before giving up (then: retry later)
BUSY_TIMEOUT_MS = 5

_T = TypeVar("_T")

#: one row of ours: id, git_remote_url, git_branch, git_ref
GitRow = tuple[str, str | None, str | None, str | None]


# ---------------------------------------------------------------------------- location


def locate(environ: Mapping[str, str], home: Path, *, system: str = sys.platform) -> Path:
    """Where the Traces CLI keeps its database, by its own rules, from this environment."""
    path, legacy = _rules(environ, home, system)
    return next((p for p in legacy if os.path.exists(p)), path)


def watched_files(
    environ: Mapping[str, str], home: Path, *, system: str = sys.platform
) -> tuple[Path, ...]:
    """Every file whose appearance decides `locate()`'s answer (the legacy ones too)."""
    path, legacy = _rules(environ, home, system)
    return (*legacy, path)


def _rules(environ: Mapping[str, str], home: Path, system: str) -> tuple[Path, tuple[Path, ...]]:
    """The default path, and the legacy files that win over it when one exists."""
    store = environ.get("TRACES_EVENTSTORE", "").strip()
    if store:
        return (
            Path(store) if store.startswith("/") else _data_file(environ, home, system, store)
        ), ()
    endpoint = _endpoint(environ)
    if endpoint == PRODUCTION:
        default = _data_file(environ, home, system, "traces.db")
        return default, (home / ".traces" / "traces.db", home / ".traces" / "events.db")
    if endpoint == STAGING:
        return _data_file(environ, home, system, "traces-staging.db"), ()
    digest = hashlib.sha256(endpoint.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return _data_file(environ, home, system, f"traces.{digest}.db"), ()


def _endpoint(environ: Mapping[str, str]) -> str:
    url = environ.get("TRACES_HTTP_URL") or PRODUCTION  # empty is unset; no trim
    return url[:-1] if url.endswith("/") else url  # one trailing `/`, no more


def _data_file(environ: Mapping[str, str], home: Path, system: str, name: str) -> Path:
    """`name` in the CLI's data directory, joined as Node's path.join does (normalised)."""
    if system == "darwin":
        base = str(home / "Library" / "Application Support")
    else:  # Linux and the other Unixes; the CLI's Windows rule does not concern us
        base = environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    joined = posixpath.normpath(posixpath.join(base, "traces", name))
    return Path("/" + joined.lstrip("/") if joined.startswith("//") else joined)


# ----------------------------------------------------------------------------- access


class CliDbError(Exception):
    """The CLI's database could not be read or written (the message says why)."""


class Busy(CliDbError):
    """The CLI holds the lock: try again later. `rows`: filled before it took it."""

    rows = 0


class Missing(CliDbError):
    """There is no file at the path (it is never created)."""


@dataclass(frozen=True, slots=True)
class Filled:
    rows: int
    statements: int
    #: the longest time one write transaction held the lock (seconds)
    max_hold_s: float


class Connection:
    """One short-lived connection to the CLI's file (use as a context manager). Each
    method runs blocking SQLite calls: call it from a worker thread."""

    def __init__(self, path: Path, *, query_only: bool = False) -> None:
        """`query_only`: no statement of this connection can change the file (doctor)."""
        self.path = path
        try:
            check_store(str(path))  # before SQLite opens it: a FIFO would block the thread
        except FileNotFoundError:
            raise Missing(f"{path} does not exist") from None
        except NotRegular as exc:
            raise CliDbError(str(exc)) from None
        except OSError as exc:
            raise CliDbError(f"{path}: {exc.strerror}") from None
        with _translated(path):
            self._conn = sqlite3.connect(
                sqliteuri.uri(path, "mode=rw"),  # never creates the file
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # used by one worker thread at a time
            )
        try:
            with _translated(path):
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if query_only:
                    self._conn.execute("PRAGMA query_only = ON")
                # Per connection, not stored in the file: the CLI itself runs NORMAL.
                self._conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def columns(self) -> set[str]:
        """The columns of its `traces` table (none when it has no such table)."""
        with _translated(self.path):
            rows = self._conn.execute("PRAGMA table_info(traces)").fetchall()
        return {row[1] for row in rows}

    def has_git_columns(self) -> bool:
        """Its `traces` table has all three git columns (the columns, never the version)."""
        return set(GIT_COLUMNS) <= self.columns()

    def shares(self, ids: Iterable[str] | None = None) -> dict[str, str | None] | None:
        """Each row's share URL (None: not shared), for the rows among `ids` (all when
        None); None when the table has no share column. A value that is not a non-empty
        string is no URL."""
        column = next((c for c in SHARE_COLUMNS if c in self.columns()), None)
        if column is None:
            return None
        rows = self._rows(f"SELECT id, {column} FROM traces", "TRUE", ids)
        return {
            row[0]: row[1] if isinstance(row[1], str) and row[1] else None
            for row in rows
            if isinstance(row[0], str)
        }

    def lacking(self, ids: Iterable[str] | None = None) -> list[str]:
        """Ids of rows with some NULL git column (only among `ids` when given)."""
        where = " OR ".join(f"{c} IS NULL" for c in GIT_COLUMNS)
        rows = self._rows("SELECT id FROM traces", f"({where})", ids)
        return [row[0] for row in rows if isinstance(row[0], str)]

    def _rows(self, select: str, where: str, ids: Iterable[str] | None) -> list[Any]:
        """`select ... WHERE where`, over every row or only those among `ids` (read in
        chunks of READ_CHUNK ids)."""
        with _translated(self.path):
            if ids is None:
                return self._conn.execute(f"{select} WHERE {where}").fetchall()
            rows: list[Any] = []
            for chunk in _chunks(list(dict.fromkeys(ids)), READ_CHUNK):
                marks = ", ".join("?" * len(chunk))
                sql = f"{select} WHERE {where} AND id IN ({marks})"
                rows += self._conn.execute(sql, chunk).fetchall()
            return rows

    def git_rows(self, ids: Sequence[str]) -> dict[str, tuple[object, object, object]]:
        """The git columns of those of `ids` the file has."""
        found: dict[str, tuple[object, object, object]] = {}
        with _translated(self.path):
            for chunk in _chunks(list(dict.fromkeys(ids)), READ_CHUNK):
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT id, {', '.join(GIT_COLUMNS)} FROM traces WHERE id IN ({marks})"
                for row in self._conn.execute(sql, chunk):
                    found[row[0]] = (row[1], row[2], row[3])
        return found

    def fill(self, rows: Sequence[GitRow], batch: int = BATCH) -> Filled:
        """Set each NULL git column of these rows to our value; never a non-NULL one. One
        short transaction per `batch` rows; Busy as soon as the CLI holds the lock (what
        was committed before stays). A row is written only if something changes in it."""
        sets = ", ".join(f"{c} = COALESCE({c}, ?)" for c in GIT_COLUMNS)
        needs = " OR ".join(f"({c} IS NULL AND ? IS NOT NULL)" for c in GIT_COLUMNS)
        sql = f"UPDATE traces SET {sets} WHERE id = ? AND ({needs})"
        changed = statements = 0
        max_hold = 0.0
        useful = [r for r in rows if any(v is not None for v in r[1:])]
        for chunk in _chunks(useful, batch):
            args = [(r, b, g, i, r, b, g) for i, r, b, g in chunk]
            try:
                with _translated(self.path):
                    started = time.perf_counter()
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        cursor = self._conn.executemany(sql, args)
                        self._conn.execute("COMMIT")
                    except BaseException:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        raise
                    max_hold = max(max_hold, time.perf_counter() - started)
            except Busy as exc:
                exc.rows = changed
                raise
            changed += max(cursor.rowcount, 0)
            statements += 1
        return Filled(changed, statements, max_hold)


def signature(path: Path) -> tuple[object, ...]:
    """What a write by anyone changes: the database's and its journals' identity, size and
    times (a read of ours leaves it as it was; see bridge.py)."""
    out: list[object] = []
    for suffix in ("", "-wal", "-journal"):
        try:
            st = os.stat(f"{path}{suffix}")
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """sqlite3 errors -> Busy (locked: later) or CliDbError, once, here."""
    try:
        yield
    except sqlite3.Error as exc:
        if fault(exc) is Fault.BUSY:
            raise Busy(f"{path}: {exc}") from None
        raise CliDbError(f"{path}: {exc}") from None
