"""Agents' own SQLite stores (OpenCode, Cursor, Cline), read without getting in their way.

A store is opened read-only (`mode=ro`), never written, and with a short busy timeout: when
its agent holds it locked the read fails fast as `locked`, and the dispatcher tries again
later instead of waiting. A WAL-mode store changes in its `-wal` file long before the
main file does, so adapters match both and `database_of` maps either to the database.

A store holds every session at once, and any write changes it, so `Sessions` remembers
what the last read made of each session: a change costs one query of ids and update
stamps, and only the sessions whose stamp moved are read again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping

from tracesd import sqliteuri
from tracesd.errors import ParseError
from tracesd.models import TraceMeta
from tracesd.safeopen import NotRegular, check_store
from tracesd.sqliteerrors import Fault, fault

#: how long a read waits for an agent that holds its store locked
BUSY_TIMEOUT_S = 0.2
#: connections kept open per worker thread, and the page cache of each
OPEN_PER_THREAD = 4
CACHE_KIB = 512
_open = threading.local()
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")

Stamp = object
ReadFn = Callable[[list[str]], Mapping[str, TraceMeta | None]]


def database_of(path: str) -> str:
    """The database a path belongs to: itself, or the database of a `-wal`/`-journal` file."""
    for suffix in SIDE_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def is_store(name: str, database: str) -> bool:
    """Whether file `name` is `database` or one of the files SQLite writes beside it (the
    shared-memory file excepted: it changes on every read, ours included)."""
    return name == database or name in (database + "-wal", database + "-journal")


@contextlib.contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the database of `path`, in one read transaction (every
    query sees the same snapshot). sqlite3 errors become ParseError.

    Connections are kept open between reads, a few per worker thread: a scan reads one
    store for each of hundreds of side files, and opening one (and reading its schema)
    costs more than the query. Outside its transaction a connection holds no lock; one
    whose file was replaced (another inode) is never reused.
    """
    database = database_of(path)
    try:
        # SQLite opens the files itself, blocking on a FIFO: a special file is refused
        # first (what remains is a swap between this check and SQLite's open()).
        st = check_store(database)
    except NotRegular as exc:
        raise ParseError("not_a_file", str(exc)) from None
    except OSError:
        raise ParseError(
            "vanished", f"database vanished before it could be read: {database!r}"
        ) from None
    key = (database, st.st_dev, st.st_ino)
    pool = _pool()
    conn = pool.pop(key, None)
    if conn is None:
        uri = sqliteuri.read_only(database)
        with _translated(database):
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    reusable = False
    try:
        with _translated(database):
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:  # an error may have ended it already
                    conn.execute("ROLLBACK")
        reusable = True
    finally:
        if reusable:
            pool[key] = conn
            while len(pool) > OPEN_PER_THREAD:
                pool.popitem(last=False)[1].close()
        else:
            conn.close()


def _pool() -> OrderedDict[tuple[str, int, int], sqlite3.Connection]:
    pool: OrderedDict[tuple[str, int, int], sqlite3.Connection] | None = getattr(
        _open, "pool", None
    )
    if pool is None:
        pool = _open.pool = OrderedDict()
    return pool


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns `table` has (empty when there is no such table): schemas vary by version."""
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def text(value: object) -> str | None:
    """A TEXT or BLOB cell as text (key-value stores keep JSON in either)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class Sessions:
    """Per store, the stamp and the TraceMeta of every session the last read saw.

    `refresh` reads only the sessions whose stamp changed (or that are new) and returns the
    TraceMeta of every session the store holds now. One lock serialises reads, so a store
    and its `-wal` file, changed together, are not read twice at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, tuple[Stamp, TraceMeta | None]]] = {}

    def refresh(self, database: str, stamps: Mapping[str, Stamp], read: ReadFn) -> list[TraceMeta]:
        with self._lock:
            known = self._seen.get(database, {})
            todo = [
                sid for sid, stamp in stamps.items() if sid not in known or known[sid][0] != stamp
            ]
            fresh = read(todo) if todo else {}
            now = {
                sid: (stamp, fresh.get(sid) if sid in todo else known[sid][1])
                for sid, stamp in stamps.items()
            }
            self._seen[database] = now
            return [meta for _, meta in now.values() if meta is not None]

    def lookup(
        self, database: str, sid: str, stamp: Stamp, read: Callable[[], TraceMeta | None]
    ) -> TraceMeta | None:
        """One session by id (a side file of the store names it): the remembered TraceMeta
        when its stamp is unchanged, else `read()`, remembered for the next lookup or
        refresh."""
        with self._lock:
            known = self._seen.setdefault(database, {})
            if sid in known and known[sid][0] == stamp:
                return known[sid][1]
            meta = read()
            known[sid] = (stamp, meta)
            return meta

    def forget(self, databases: Collection[str]) -> None:
        with self._lock:
            for database in databases:
                self._seen.pop(database, None)


@contextlib.contextmanager
def _translated(database: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise _parse_error(exc, database) from None


def _parse_error(exc: sqlite3.Error, database: str) -> ParseError:
    message = str(exc)
    if fault(exc) is Fault.BUSY:
        return ParseError("locked", f"{database!r} is locked by its agent: {message}")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in message or "malformed" in message or "no such" in message
    ):
        return ParseError("malformed", f"{database!r} is not a store we can read: {message}")
    return ParseError("unreadable", f"cannot read {database!r}: {message}")
