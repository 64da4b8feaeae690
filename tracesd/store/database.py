"""The SQLite store: one aiosqlite connection, WAL, migrations at open.

All SQL of the running daemon lives here. Writes go through `atomic()`, which serialises
transactions of concurrent tasks on the one connection and rolls back on any exception.
Ingest writes go through `write()`, a group commit (`groupcommit`): an ingest arriving
while a transaction is in flight joins the next one. The Traces CLI shares the file, so a busy
database is waited for (busy_timeout), not failed; a write that waits longer than
BUSY_WARN_S is logged (`store.busy`) and shown in status until a write gets through. A
corrupt database is the daemon's to move aside (see quarantine.py): opened with
`move_corrupt=True`, the store moves it and starts a new one, which scans refill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from tracesd.errors import RowRejected, StoreClosed, StoreCorrupt, StoreError
from tracesd.git.remote_url import canonical
from tracesd.models import TRACE_COLUMNS, Capture, FileStamp, FileState, Trace, racy
from tracesd.sqliteerrors import Fault, fault
from tracesd.store import dbfile, quarantine
from tracesd.store.groupcommit import GroupCommit
from tracesd.store.transaction import Transaction

log = structlog.get_logger("tracesd.store")

BUSY_TIMEOUT_S = 10.0
#: a write waiting this long for another program's lock is logged and shown in status
BUSY_WARN_S = 1.0
#: most captures one group-commit transaction carries
MAX_GROUP = 500


class Store:
    """Open with `await Store.open(path)`; close with `await store.close()` (idempotent)."""

    def __init__(
        self, conn: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path
    ) -> None:
        self._conn: aiosqlite.Connection | None = conn
        # Reads go to a second connection (WAL: it sees the last commit without waiting for
        # the writer), so status answers stay fast while a big scan is writing.
        self._reader: aiosqlite.Connection | None = reader
        self.path = path
        self._write_lock = asyncio.Lock()
        self._group = GroupCommit(
            self._commit, max_group=MAX_GROUP, alone=(RowRejected,), name="store-flush"
        )
        #: since when (wall time) writes have been waiting for another program's lock
        self.busy_since: float | None = None
        #: how many times writes had to wait longer than BUSY_WARN_S
        self.busy_episodes = 0
        #: since when writes fail for want of space (None: they do not), and how often
        self.full_since: float | None = None
        self.full_episodes = 0
        #: where a corrupt database found at this open was moved to
        self.moved_aside: Path | None = None
        #: every database moved aside from this path so far (for status and doctor)
        self.quarantined: list[Path] = []

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        verify: bool = False,
        move_corrupt: bool = False,
        legacy: Path | None = None,
    ) -> Store:
        """Create the directory (0700) and file (0600) if needed, migrate, connect.

        `verify` runs `PRAGMA quick_check` first. A corrupt database raises StoreCorrupt,
        or with `move_corrupt` is moved aside (`moved_aside`) and replaced by a new one.
        `legacy`: an earlier install's database, taken over first when it is tracesd's.
        """
        moved = await asyncio.to_thread(
            dbfile.prepare, path, busy_timeout_s, verify, move_corrupt, legacy
        )
        try:
            conn = await _connect(path, busy_timeout_s)
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            reader = await _connect(path, busy_timeout_s)
            await reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            if fault(exc) is Fault.CORRUPT:
                raise StoreCorrupt(path, str(exc)) from None
            raise StoreError(f"cannot open database {path}: {exc}") from None
        store = cls(conn, reader, path)
        store.moved_aside = moved
        store.quarantined = await asyncio.to_thread(quarantine.quarantined, path)
        return store

    async def close(self) -> None:
        await self._group.drain()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("PRAGMA optimize")
            await conn.close()

    @property
    def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreClosed("the store is closed")
        return self._conn

    @contextlib.asynccontextmanager
    async def atomic(self) -> AsyncIterator[Transaction]:
        """One write transaction (BEGIN IMMEDIATE); concurrent callers wait their turn.

        sqlite3 errors inside become StoreError (`busy` when the database stayed locked
        past the busy timeout, e.g. while the Traces CLI held a long write).
        """
        async with self._write_lock:
            db = self._db
            with _translated(self.path):
                await self._begin(db)
            try:
                with _translated(self.path):
                    yield Transaction(db)
                    await db.execute("COMMIT")
            except BaseException as exc:
                # Also after a failed COMMIT (a full disk): SQLite may keep the transaction.
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                if isinstance(exc, StoreError) and exc.full:
                    self._disk_full(exc)
                raise
            if self.full_since is not None:
                log.info("store.full_cleared", full_s=round(time.time() - self.full_since, 2))
                self.full_since = None

    def _disk_full(self, exc: StoreError) -> None:
        """A write failed for want of space: logged once per episode, shown in status until
        a write gets through; the callers retry, so nothing is dropped."""
        if self.full_since is not None:
            return
        self.full_since = time.time()
        self.full_episodes += 1
        log.warning(
            "store.full",
            path=str(self.path),
            error=str(exc),
            hint="no space left for the database: free some on its file system; writes are"
            " retried until they fit, nothing is dropped",
        )

    async def _begin(self, db: aiosqlite.Connection) -> None:
        """BEGIN IMMEDIATE, waiting up to the busy timeout for another writer; a wait past
        BUSY_WARN_S marks the store busy until a transaction begins."""
        begin = asyncio.ensure_future(db.execute("BEGIN IMMEDIATE"))
        try:
            await self._began(begin)
        except asyncio.CancelledError:
            # The BEGIN runs on the connection's thread regardless: end it, or the next
            # transaction on this connection fails ("within a transaction").
            with contextlib.suppress(sqlite3.Error, asyncio.CancelledError):
                await begin
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise

    async def _began(self, begin: asyncio.Future[Any]) -> None:
        done, _ = await asyncio.wait({begin}, timeout=BUSY_WARN_S)
        if not done and self.busy_since is None:
            self.busy_since = time.time() - BUSY_WARN_S
            self.busy_episodes += 1
            log.warning(
                "store.busy",
                path=str(self.path),
                waited_s=BUSY_WARN_S,
                hint="another program (the Traces CLI?) holds a write lock on the database;"
                f" waiting up to {BUSY_TIMEOUT_S:g} s per attempt, then retrying: nothing is"
                " dropped",
            )
        await begin
        if self.busy_since is not None:
            log.info("store.busy_cleared", waited_s=round(time.time() - self.busy_since, 2))
            self.busy_since = None

    # ------------------------------------------------------------------------ writes

    async def write(self, capture: Capture) -> frozenset[str]:
        """Commit one ingest's writes, in a transaction shared with concurrent callers (see
        `groupcommit`); the ids of `capture.new` this write inserted (the others were stored
        already, by another file of the same session or another program, and were merged
        into).

        Raises StoreError (busy or full: retry later) or RowRejected, which only ever
        concerns this capture: a batch the database refuses is retried one at a time.
        """
        return await self._group.submit(capture)

    async def _commit(self, captures: list[Capture]) -> list[frozenset[str]]:
        """One transaction; for each capture, the ids of its `new` that it inserted (an id
        two captures both brought is inserted once, by the first)."""
        async with self.atomic() as tx:
            new = [trace for capture in captures for trace in capture.new]
            inserted = await tx.upsert_many(new) if new else set()
            for capture in captures:
                for trace_id, fields in capture.updates:
                    await tx.update(trace_id, **fields)
            files = [capture.file for capture in captures if capture.file is not None]
            if files:
                await tx.set_files(files)
        unclaimed = set(inserted)
        claimed = []
        for capture in captures:
            mine = frozenset(t.id for t in capture.new if t.id in unclaimed)
            unclaimed -= mine
            claimed.append(mine)
        return claimed

    # ----------------------------------------------------------------- single writes

    async def upsert(self, trace: Trace) -> None:
        async with self.atomic() as tx:
            await tx.upsert(trace)

    async def update(self, trace_id: str, **fields: Any) -> bool:
        async with self.atomic() as tx:
            return await tx.update(trace_id, **fields)

    # ------------------------------------------------------------------------- reads

    async def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """One query, one round trip to the database thread."""
        return await self._rows(sql, args)

    async def execute_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """One statement over many rows, in a transaction of its own."""
        async with self.atomic() as tx:
            await tx.execute_many(sql, rows)

    async def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """One query, one round trip to the reader's thread."""
        if self._reader is None:
            raise StoreClosed("the store is closed")
        with _translated(self.path):
            return list(await self._reader.execute_fetchall(sql, args))

    async def get(self, trace_id: str) -> Trace | None:
        rows = await self._rows("SELECT * FROM traces WHERE id = ?", (trace_id,))
        return _trace(rows[0]) if rows else None

    async def _rows_in(self, table: str, column: str, values: Iterable[str]) -> list[sqlite3.Row]:
        """Rows whose `column` is one of `values`, in chunks SQLite accepts."""
        rows: list[sqlite3.Row] = []
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            sql = f"SELECT * FROM {table} WHERE {column} IN ({', '.join('?' * len(chunk))})"
            rows += await self._rows(sql, chunk)
        return rows

    async def get_many(self, trace_ids: Iterable[str]) -> dict[str, Trace]:
        return {row["id"]: _trace(row) for row in await self._rows_in("traces", "id", trace_ids)}

    async def git_rows(
        self, trace_ids: Iterable[str]
    ) -> list[tuple[str, str | None, str | None, str | None]]:
        """(id, git_remote_url, git_branch, git_ref) of the traces among `trace_ids` that
        have any git context (what the Traces CLI bridge may fill in)."""
        rows: list[tuple[str, str | None, str | None, str | None]] = []
        unique = list(dict.fromkeys(trace_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            sql = (
                "SELECT id, git_remote_url, git_branch, git_ref FROM traces"
                f" WHERE id IN ({', '.join('?' * len(chunk))}) AND"
                " COALESCE(git_remote_url, git_branch, git_ref) IS NOT NULL"
            )
            rows += [(r[0], r[1], r[2], r[3]) for r in await self._rows(sql, chunk)]
        return rows

    async def list_traces(
        self,
        *,
        agent: str | None = None,
        repo: str | None = None,
        directory: str | None = None,
        limit: int = 50,
    ) -> list[Trace]:
        """Traces newest first (by last activity), filtered by agent, remote URL, directory.

        `repo` is any form of the repository's URL (ssh, scp-like, https with or without
        `.git`): its canonical form is compared with the stored one (INTERFACE section 5);
        `directory` matches the directory itself and everything below it.
        """
        where: list[str] = []
        args: list[Any] = []
        if agent:
            where.append("agent_id = ?")
            args.append(agent)
        if repo:
            where.append("git_remote_url = ?")
            args.append(canonical(repo))
        if directory:
            directory = directory.rstrip("/") or "/"
            prefix = directory if directory.endswith("/") else directory + "/"
            where.append(r"(directory = ? OR directory LIKE ? ESCAPE '\')")
            args += [directory, _like_escape(prefix) + "%"]
        sql = "SELECT * FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY COALESCE(timestamp, created_at, 0) DESC, id LIMIT ?"
        args.append(limit)
        return [_trace(row) for row in await self._rows(sql, args)]

    async def count_by_agent(self) -> dict[str, int]:
        sql = "SELECT agent_id, COUNT(*) FROM traces GROUP BY agent_id ORDER BY agent_id"
        return {row[0]: row[1] for row in await self._rows(sql)}

    async def directories(self) -> list[str]:
        sql = "SELECT DISTINCT directory FROM traces WHERE directory IS NOT NULL"
        return [row[0] for row in await self._rows(sql)]

    async def file_stamps(self, *, racy_before: int = 0) -> dict[str, FileStamp]:
        """Every file's last read, without decoding trace ids (a scan of a big tree reads
        them all, on the event loop's thread). Reads made before `racy_before` (ms since
        epoch) that were racy (models.RACY_NS) are marked so."""
        rows = await self._rows(
            "SELECT path, size, mtime_ns, error, COALESCE(trace_ids, '[]') <> '[]', seen_at"
            " FROM tracesd_files"
        )
        return {
            row[0]: FileStamp(
                row[1], row[2], row[3], bool(row[4]), row[5] < racy_before and racy(row[2], row[5])
            )
            for row in rows
        }

    async def file_states_for(self, paths: Iterable[str]) -> dict[str, FileState]:
        rows = await self._rows_in("tracesd_files", "path", paths)
        return {row["path"]: _file_state(row) for row in rows}

    async def file_state(self, path: str) -> FileState | None:
        rows = await self._rows("SELECT * FROM tracesd_files WHERE path = ?", (path,))
        return _file_state(rows[0]) if rows else None


async def _connect(path: Path, busy_timeout_s: float) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    return conn


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError) as exc:
        raise RowRejected(f"database {path} refused a row: {exc}") from exc
    except (UnicodeEncodeError, OverflowError) as exc:
        raise RowRejected(f"database {path} refused a value: {exc}") from exc
    except sqlite3.Error as exc:
        kind = fault(exc)
        if kind is Fault.CORRUPT:
            raise StoreCorrupt(path, str(exc)) from exc
        raise StoreError(
            f"database {path}: {exc}", busy=kind is Fault.BUSY, full=kind is Fault.FULL
        ) from exc


def _trace(row: sqlite3.Row) -> Trace:
    return Trace(**{c: row[c] for c in TRACE_COLUMNS})


def _file_state(row: sqlite3.Row) -> FileState:
    try:
        ids = tuple(json.loads(row["trace_ids"] or "[]"))
    except ValueError:
        ids = ()
    return FileState(
        row["path"],
        row["agent_id"],
        row["size"],
        row["mtime_ns"],
        ids,
        row["error"],
        row["seen_at"],
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
