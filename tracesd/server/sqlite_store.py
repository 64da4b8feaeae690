"""The reference server's SQLite storage (the `Storage` rules: `storage`).

A batch is one transaction: its stored rows are read in one query, merged (`merge`), and
the changed ones written with one executemany. The layout and its migrations are in
`sqlite_layout`; messages in `sqlite_messages`.

One write connection (BEGIN IMMEDIATE, serialised by a lock) and one read connection:
WAL lets a listing read committed data while a batch is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from tracesd.errors import StoreClosed, StoreError
from tracesd.models import now_ms
from tracesd.server import sqlite_messages as messages
from tracesd.server.auth import ANONYMOUS
from tracesd.server.sqlite_layout import SCHEMA_VERSION, prepare, translated
from tracesd.server.storage import (
    COLUMNS,
    KEPT,
    READ_COLUMNS,
    Detail,
    Item,
    Message,
    Page,
    listing_conditions,
    merge,
    page,
    row,
    selected,
)
from tracesd.store.groupcommit import GroupCommit

__all__ = ["SCHEMA_VERSION", "SQLiteStorage"]

BUSY_TIMEOUT_S = 10.0
#: items one group-commit transaction carries (a larger single batch still goes alone)
MAX_GROUP = 1000

_SELECT = f"SELECT seq, {', '.join(READ_COLUMNS)} FROM traces"
_UPSERT = (
    f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (external_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in KEPT)
)


class SQLiteStorage:
    """Open with `await SQLiteStorage.open(path)`; close with `await db.close()` (idempotent)."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path):
        self.path = path
        self._writer: aiosqlite.Connection | None = writer
        self._reader: aiosqlite.Connection | None = reader
        self._lock = asyncio.Lock()
        self._group: GroupCommit[Sequence[Item], list[Detail | None]] = GroupCommit(
            self._commit_group, max_group=MAX_GROUP, size=len, name="server-db-flush"
        )

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        legacy_namespace: str = ANONYMOUS.namespace_id,
    ) -> SQLiteStorage:
        """Create the directory (0700), the file (0600) and the schema if needed; connect.

        Traces of an earlier layout, which had no owner, go to `legacy_namespace`. A write
        waits up to `busy_timeout_s` for another writer, then fails as busy.
        """
        await asyncio.to_thread(prepare, path, busy_timeout_s, legacy_namespace)
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
        await self._group.drain()  # upserts already accepted are committed, not dropped
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    # ------------------------------------------------------------------------ writes

    async def upsert_many(
        self, items: Sequence[Mapping[str, Any]], namespace: str = ANONYMOUS.namespace_id
    ) -> list[Detail | None]:
        """Store validated BatchItems in `namespace`; the detail after each item, in order
        (None: the externalId belongs to another namespace, nothing changed).

        Items are applied in order, so the same externalId twice ends as if sent one after
        the other. Group commit: upserts that arrive while a transaction is being written
        share the next one (eight concurrent PUTs cost one transaction, not eight). Raises
        StoreError (busy: worth retrying) when the database cannot be written; then none
        of these items is stored.
        """
        return await self._group.submit([(namespace, item) for item in items])

    async def _commit_group(self, requests: list[Sequence[Item]]) -> list[list[Detail | None]]:
        """The upserts of several requests in one transaction; each request's details."""
        details = await self._commit([item for items in requests for item in items])
        out = []
        offset = 0
        for items in requests:
            out.append(details[offset : offset + len(items)])
            offset += len(items)
        return out

    async def _commit(self, items: Sequence[Item]) -> list[Detail | None]:
        """One transaction: read the stored rows of `items`, merge, write what changed."""
        async with self._transaction() as db:
            stored = await self._stored(db, {item["externalId"] for _, item in items})
            details, changed = merge(stored, items, now_ms())
            if changed:
                await db.executemany(_UPSERT, [row(d) for d in changed])
        return details

    @staticmethod
    async def _stored(db: aiosqlite.Connection, ids: set[str]) -> dict[str, Detail]:
        # At most MAX_GROUP ids, or one batch (500): far below SQLite's 32766 parameters.
        sql = f"{_SELECT} WHERE external_id IN ({', '.join('?' * len(ids))})"
        rows = await db.execute_fetchall(sql, list(ids))
        return {found["externalId"]: found for found in map(selected, rows)}

    async def delete(self, external_id: str, namespace: str) -> bool:
        """Delete a trace of `namespace` with its messages; False when there is none."""
        async with self._transaction() as db:
            seq = await _seq(db, external_id, namespace)
            if seq is None:
                return False
            await messages.delete_all(db, seq)
            await db.execute("DELETE FROM traces WHERE seq = ?", (seq,))
        return True

    async def upsert_messages(
        self, external_id: str, namespace: str, entries: Sequence[Mapping[str, Any]]
    ) -> int | None:
        """Merge validated message entries into a trace of `namespace` (`messages.store`);
        how many distinct messages they name, or None when there is no such trace."""
        async with self._transaction() as db:
            seq = await _seq(db, external_id, namespace)
            if seq is None:
                return None
            return await messages.store(db, seq, entries)

    async def put_message(
        self, external_id: str, namespace: str, entry: Mapping[str, Any]
    ) -> Message | None:
        """Merge one validated entry; the message as stored (with its parts), or None
        when there is no such trace."""
        async with self._transaction() as db:
            seq = await _seq(db, external_id, namespace)
            if seq is None:
                return None
            await messages.store(db, seq, [entry])
            (stored,) = await messages.read(db, seq, parts=True, ids=[entry["externalId"]])
            return stored

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), one at a time."""
        async with self._lock:
            db = _open(self._writer)
            with translated(self.path):
                await db.execute("BEGIN IMMEDIATE")
            try:
                with translated(self.path):
                    yield db
                    await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------------- reads

    async def get(self, external_id: str, namespace: str = ANONYMOUS.namespace_id) -> Detail | None:
        rows = await self._rows(
            f"{_SELECT} WHERE external_id = ? AND namespace_id = ?", [external_id, namespace]
        )
        return selected(rows[0]) if rows else None

    async def read_messages(
        self, external_id: str, namespace: str, *, parts: bool
    ) -> list[Message] | None:
        """A trace's messages in order (with their parts when `parts`); None: no trace."""
        async with self._read() as db:
            seq = await _seq(db, external_id, namespace)
            if seq is None:
                return None
            return await messages.read(db, seq, parts=parts)

    async def list_traces(
        self,
        namespace: str = ANONYMOUS.namespace_id,
        *,
        git_remote_url: str | None = None,
        git_branch: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Page:
        """A namespace's traces, newest first (by insertion), exact-match filters,
        `before`: a previous next_before."""
        conditions = listing_conditions(
            namespace,
            git_remote_url=git_remote_url,
            git_branch=git_branch,
            agent_id=agent_id,
            before=before,
        )
        where = " AND ".join(f"{condition} ?" for condition, _ in conditions)
        sql = f"{_SELECT} WHERE {where} ORDER BY seq DESC LIMIT ?"
        return page(await self._rows(sql, [*(v for _, v in conditions), limit + 1]), limit)

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        async with self._read() as db:
            return list(await db.execute_fetchall(sql, args))

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The read connection (each statement sees the last commit before it)."""
        db = _open(self._reader)
        with translated(self.path):
            yield db


async def _seq(db: aiosqlite.Connection, external_id: str, namespace: str) -> int | None:
    rows = list(
        await db.execute_fetchall(
            "SELECT seq FROM traces WHERE external_id = ? AND namespace_id = ?",
            (external_id, namespace),
        )
    )
    return int(rows[0][0]) if rows else None


def _open(conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
    if conn is None:
        raise StoreClosed("the server database is closed")
    return conn
