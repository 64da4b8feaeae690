"""The reference server's database: traces keyed by externalId, in their own SQLite file.

Rows are kept in API terms at this module's edge: an upsert takes validated request
objects (camelCase, externalId included) and returns TraceDetail objects, so the handlers
never see a column name.

A repository URL is stored in canonical form (tracesd.repourl, INTERFACE section 5), and
the `gitRemoteUrl` filter compares canonical forms: any form of a repository's URL finds
its traces, whichever form each client sent.

Upsert rule: fields left out keep their stored value; createdAt is set once; updatedAt
moves (strictly forward) only when some field value actually changes, so re-sending the
same body is a no-op that answers the same TraceDetail. A batch is one transaction: its
stored rows are read in one query, merged here, and the changed ones written with one
executemany.

Each row also has an insertion sequence (`seq`, the rowid), assigned once when the
externalId is first stored. Listings run newest first by `seq` and page with "seq below
N", so a page boundary never moves when traces are added or updated between two pages.

One write connection (BEGIN IMMEDIATE, serialised by a lock) and one read connection:
WAL lets a listing read committed data while a batch is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from tracesd.dbfile import create_private
from tracesd.errors import StoreClosed, StoreError
from tracesd.repourl import canonical

#: 1: the first layout; 2: every stored gitRemoteUrl canonical
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 10.0
#: items one group-commit transaction carries (a larger single batch still goes alone)
MAX_GROUP = 1000

#: (API field, column) of every stored field but createdAt/updatedAt
FIELDS: tuple[tuple[str, str], ...] = (
    ("externalId", "external_id"),
    ("agentId", "agent_id"),
    ("title", "title"),
    ("preview", "preview"),
    ("timestamp", "timestamp"),
    ("projectPath", "project_path"),
    ("visibility", "visibility"),
    ("gitRemoteUrl", "git_remote_url"),
    ("gitBranch", "git_branch"),
    ("gitRef", "git_ref"),
)
_NAMES = (*(name for name, _ in FIELDS), "createdAt", "updatedAt")
_COLUMNS = (*(column for _, column in FIELDS), "created_at", "updated_at")

_SCHEMA = (
    # seq is the rowid: insertion order, never reused (rows are never deleted)
    "CREATE TABLE traces ("
    " seq INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,"
    " title TEXT, preview TEXT, timestamp INTEGER, project_path TEXT, visibility TEXT,"
    " git_remote_url TEXT, git_branch TEXT, git_ref TEXT,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    # Each index ends in the rowid: "filter = ? AND seq < ? ORDER BY seq DESC" is a range.
    "CREATE INDEX traces_remote ON traces (git_remote_url)",
    "CREATE INDEX traces_remote_branch ON traces (git_remote_url, git_branch)",
    "CREATE INDEX traces_agent ON traces (agent_id)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_SELECT = f"SELECT seq, {', '.join(_COLUMNS)} FROM traces"
_UPSERT = (
    f"INSERT INTO traces ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (external_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("external_id", "created_at"))
)

Detail = dict[str, Any]
"""A TraceDetail: API field names, fields without a value left out."""


@dataclass(frozen=True, slots=True)
class Page:
    traces: list[Detail]
    #: pass as `before` for the next page; None on the last page
    next_before: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


class TraceDB:
    """Open with `await TraceDB.open(path)`; close with `await db.close()` (idempotent)."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path):
        self.path = path
        self._writer: aiosqlite.Connection | None = writer
        self._reader: aiosqlite.Connection | None = reader
        #: upserts waiting for the next transaction, with the futures their callers await
        self._pending: list[tuple[Sequence[Mapping[str, Any]], asyncio.Future[list[Detail]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> TraceDB:
        """Create the directory (0700), the file (0600) and the schema if needed; connect.

        A write waits up to `busy_timeout_s` for another writer, then fails as busy.
        """
        await asyncio.to_thread(_prepare, path, busy_timeout_s)
        connections: list[aiosqlite.Connection] = []
        try:
            for _ in range(2):
                conn = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
                connections.append(conn)
                await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                await conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            for conn in connections:
                await conn.close()
            raise StoreError(f"cannot open database {path}: {exc}") from None
        return cls(connections[0], connections[1], path)

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher  # upserts already accepted are committed, not dropped
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    # ------------------------------------------------------------------------ writes

    async def upsert_many(self, items: Sequence[Mapping[str, Any]]) -> list[Detail]:
        """Store validated BatchItems; the TraceDetail after each item, in order.

        Items are applied in order, so the same externalId twice ends as if sent one after
        the other. Group commit: upserts that arrive while a transaction is being written
        share the next one (eight concurrent PUTs cost one transaction, not eight). Raises
        StoreError (busy: worth retrying) when the database cannot be written; then none
        of these items is stored.
        """
        future: asyncio.Future[list[Detail]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="server-db-flush")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            size = _group_size([len(items) for items, _ in self._pending])
            group, self._pending = self._pending[:size], self._pending[size:]
            try:
                details = await self._commit([item for items, _ in group for item in items])
            except asyncio.CancelledError:
                for _, future in group + self._pending:
                    future.cancel()
                self._pending = []
                raise
            except Exception as exc:
                for _, future in group:
                    if not future.done():  # done: its caller went away meanwhile
                        future.set_exception(exc)
                continue
            offset = 0
            for items, future in group:
                if not future.done():
                    future.set_result(details[offset : offset + len(items)])
                offset += len(items)

    async def _commit(self, items: Sequence[Mapping[str, Any]]) -> list[Detail]:
        """One transaction: read the stored rows of `items`, merge, write what changed."""
        db = _open(self._writer)
        with _translated(self.path):
            await db.execute("BEGIN IMMEDIATE")
        try:
            with _translated(self.path):
                stored = await self._stored(db, {item["externalId"] for item in items})
                details, changed = merge(stored, items, now_ms())
                if changed:
                    await db.executemany(_UPSERT, [_row(d) for d in changed])
                await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
        return details

    @staticmethod
    async def _stored(db: aiosqlite.Connection, ids: set[str]) -> dict[str, Detail]:
        # At most MAX_GROUP ids, or one batch (500): far below SQLite's 32766 parameters.
        sql = f"{_SELECT} WHERE external_id IN ({', '.join('?' * len(ids))})"
        rows = await db.execute_fetchall(sql, list(ids))
        return {row[1]: _detail(row) for row in rows}

    # ------------------------------------------------------------------------- reads

    async def get(self, external_id: str) -> Detail | None:
        rows = await self._rows(f"{_SELECT} WHERE external_id = ?", [external_id])
        return _detail(rows[0]) if rows else None

    async def list_traces(
        self,
        *,
        git_remote_url: str | None = None,
        git_branch: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Page:
        """Newest first (by insertion), exact-match filters, `before`: a previous next_before."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("git_remote_url", git_remote_url),
            ("git_branch", git_branch),
            ("agent_id", agent_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(canonical(value) if column == "git_remote_url" else value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._rows(f"{sql} ORDER BY seq DESC LIMIT ?", [*args, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([_detail(r) for r in rows], rows[-1][0] if more else None)

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with _translated(self.path):
            return list(await _open(self._reader).execute_fetchall(sql, args))


def merge(
    stored: Mapping[str, Detail], items: Sequence[Mapping[str, Any]], now: int
) -> tuple[list[Detail], list[Detail]]:
    """Apply items to stored details: (the detail after each item, the details to write)."""
    current = dict(stored)
    changed: dict[str, Detail] = {}
    details: list[Detail] = []
    for item in map(_canonical, items):
        external_id = item["externalId"]
        old = current.get(external_id)
        if old is None:
            new = _ordered({**item, "createdAt": now, "updatedAt": now})
        elif any(old.get(name) != value for name, value in item.items()):
            new = _ordered({**old, **item, "updatedAt": max(now, old["updatedAt"] + 1)})
        else:
            new = old
        if new is not old:
            current[external_id] = changed[external_id] = new
        details.append(new)
    return details, list(changed.values())


def _canonical(item: Mapping[str, Any]) -> Mapping[str, Any]:
    url = item.get("gitRemoteUrl")
    return {**item, "gitRemoteUrl": canonical(url)} if isinstance(url, str) else item


def _group_size(sizes: Sequence[int]) -> int:
    """How many waiting requests the next transaction takes: whole requests, at least one,
    and no more than MAX_GROUP items unless the first alone is larger."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > MAX_GROUP and count > 0:
            return count
    return len(sizes)


def _detail(row: Sequence[Any]) -> Detail:
    """A row of `_SELECT` (seq first) as a TraceDetail."""
    return {name: value for name, value in zip(_NAMES, row[1:], strict=True) if value is not None}


def _ordered(values: Mapping[str, Any]) -> Detail:
    """A TraceDetail with its fields in the document's order, as a stored row reads back."""
    return {name: values[name] for name in _NAMES if name in values}


def _row(detail: Detail) -> list[Any]:
    return [detail.get(name) for name in _NAMES]


def _open(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
    if conn is None:
        raise StoreClosed("the server database is closed")
    return conn


def _prepare(path: Path, busy_timeout_s: float) -> None:
    """Create the directory (0700), the file (0600), WAL mode and the schema if needed."""
    create_private(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    try:
        with _translated(path):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")  # a second server starting at once waits here
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has server schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this tracesd supports; upgrade tracesd"
                )
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            elif version < 2:
                _canonical_remotes(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
    finally:
        conn.close()


def _canonical_remotes(conn: sqlite3.Connection) -> None:
    """1 -> 2: each stored gitRemoteUrl in canonical form, per distinct value; updatedAt
    stays (the repository is the same, only its spelling changed)."""
    found = conn.execute(
        "SELECT DISTINCT git_remote_url FROM traces WHERE git_remote_url IS NOT NULL"
    )
    for (stored,) in found.fetchall():
        wanted = canonical(stored)
        if wanted != stored:
            conn.execute(
                "UPDATE traces SET git_remote_url = ? WHERE git_remote_url = ?", (wanted, stored)
            )


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        message = str(exc)
        busy = "locked" in message or "busy" in message
        raise StoreError(f"database {path}: {message}", busy=busy) from exc
