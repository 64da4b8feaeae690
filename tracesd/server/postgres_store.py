"""The reference server's PostgreSQL storage (the `Storage` rules: `storage`), for several
server processes on one database.

A bounded asyncpg pool (`pool_size` connections per process); each write is one
transaction at READ COMMITTED:

- an upsert locks the stored rows of its externalIds (`SELECT ... FOR UPDATE`, in
  externalId order), merges with the one `merge` both engines use, updates the changed
  rows and inserts the new ones `ON CONFLICT DO NOTHING`. When another process inserted
  one of them first, the transaction is rolled back and run again, now finding that row
  stored and locking it: "fields left out are kept" and the createdAt/updatedAt rules hold
  under concurrent writers, and the merge rules stay in one pure function rather than in
  a second copy written in SQL;
- a message write locks its trace's row first, so the writes to one trace take turns;
- a deadlock or serialization failure is retried a few times, then answered as busy.

Errors are translated once, here: a database that cannot be reached, went away, has no
connection left or kept failing on conflicts is `StoreError(busy=True)` (503 with
Retry-After); the pool opens new connections once the database is back. The URL's password
never appears in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog

from tracesd.errors import StoreClosed, StoreError
from tracesd.models import now_ms
from tracesd.server import postgres_messages as messages
from tracesd.server.auth import ANONYMOUS
from tracesd.server.postgres_layout import SCHEMA_VERSION, prepare
from tracesd.server.postgres_text import TextConnection
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
    redacted,
    row,
    selected,
)

__all__ = ["SCHEMA_VERSION", "PostgresStorage"]

log = structlog.get_logger("tracesd.server")

T = TypeVar("T")

#: how often a write that lost a race (deadlock, serialization, insert) is run again
ATTEMPTS = 5
#: how long a request waits for a free pooled connection, and a new connection to open
ACQUIRE_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0

_SELECT = f"SELECT seq, {', '.join(READ_COLUMNS)} FROM traces"
_INSERT = (
    f"INSERT INTO traces ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
    " ON CONFLICT (external_id) DO NOTHING"
)
#: the columns an update writes: where they are in a `row`, and the externalId's place
_CHANGED = [n for n, column in enumerate(COLUMNS) if column not in KEPT]
_KEY = COLUMNS.index("external_id")
_UPDATE = (
    "UPDATE traces SET "
    + ", ".join(f"{COLUMNS[n]} = ${i}" for i, n in enumerate(_CHANGED, start=1))
    + f" WHERE external_id = ${len(_CHANGED) + 1}"
)
#: SQLSTATE classes and codes of a database that is away, full or contended: retry later
_BUSY_CLASSES = ("08", "53", "57P", "40", "55P03")


class _LostRace(Exception):
    """Another process inserted an externalId this transaction meant to insert."""


class PostgresStorage:
    """Open with `await PostgresStorage.open(url)`; close with `await close()` (idempotent)."""

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self._pool: asyncpg.Pool | None = pool
        #: the URL without its password: what messages and the log may name
        self.where = where

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresStorage:
        """Connect (at most `pool_size` connections) and migrate the schema."""
        where = redacted(url)
        with translated(where, url):
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=ACQUIRE_TIMEOUT_S,
                server_settings={"application_name": "tracesd-server"},
            )
        try:
            with translated(where, url):
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                    applied = await prepare(conn, where)
        except BaseException:
            pool.terminate()
            raise
        if applied:
            log.info("server.db_migrated", db=where, version=SCHEMA_VERSION, applied=applied)
        return cls(pool, where)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pool.terminate()

    # ------------------------------------------------------------------------ writes

    async def upsert_many(
        self, items: Sequence[Mapping[str, Any]], namespace: str = ANONYMOUS.namespace_id
    ) -> list[Detail | None]:
        """Store validated BatchItems in `namespace`, in order, in one transaction; the
        detail after each item (None: the externalId belongs to another namespace)."""
        pairs: list[Item] = [(namespace, item) for item in items]
        return await self._write(lambda conn: _upsert(conn, pairs))

    async def delete(self, external_id: str, namespace: str) -> bool:
        """Delete a trace of `namespace` with its messages; False when there is none."""

        async def work(conn: TextConnection) -> bool:
            sql = "DELETE FROM traces WHERE external_id = $1 AND namespace_id = $2 RETURNING seq"
            return await conn.fetchval(sql, external_id, namespace) is not None

        return await self._write(work)

    async def upsert_messages(
        self, external_id: str, namespace: str, entries: Sequence[Mapping[str, Any]]
    ) -> int | None:
        async def work(conn: TextConnection) -> int | None:
            seq = await _locked_seq(conn, external_id, namespace)
            return None if seq is None else await messages.store(conn, seq, entries)

        return await self._write(work)

    async def put_message(
        self, external_id: str, namespace: str, entry: Mapping[str, Any]
    ) -> Message | None:
        async def work(conn: TextConnection) -> Message | None:
            seq = await _locked_seq(conn, external_id, namespace)
            if seq is None:
                return None
            await messages.store(conn, seq, [entry])
            (stored,) = await messages.read(conn, seq, parts=True, ids=[entry["externalId"]])
            return stored

        return await self._write(work)

    async def _write(self, work: Callable[[TextConnection], Awaitable[T]]) -> T:
        """`work` in one transaction, run again when it lost a race to another writer."""
        with translated(self.where):
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    async with self._connection() as conn, conn.transaction():
                        return await work(conn)
                except (_LostRace, asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                    if attempt == ATTEMPTS:
                        raise StoreError(
                            f"database {self.where}: still conflicting after {ATTEMPTS} tries",
                            busy=True,
                        ) from None
                    log.debug("server.db_write_retried", attempt=attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------- reads

    async def get(self, external_id: str, namespace: str = ANONYMOUS.namespace_id) -> Detail | None:
        rows = await self._rows(
            f"{_SELECT} WHERE external_id = $1 AND namespace_id = $2", [external_id, namespace]
        )
        return selected(rows[0]) if rows else None

    async def read_messages(
        self, external_id: str, namespace: str, *, parts: bool
    ) -> list[Message] | None:
        with translated(self.where):
            async with self._connection() as conn, conn.transaction(readonly=True):
                seq = await conn.fetchval(
                    "SELECT seq FROM traces WHERE external_id = $1 AND namespace_id = $2",
                    external_id,
                    namespace,
                )
                return None if seq is None else await messages.read(conn, seq, parts=parts)

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
        conditions = listing_conditions(
            namespace,
            git_remote_url=git_remote_url,
            git_branch=git_branch,
            agent_id=agent_id,
            before=before,
        )
        where = " AND ".join(f"{c} ${n}" for n, (c, _) in enumerate(conditions, start=1))
        sql = f"{_SELECT} WHERE {where} ORDER BY seq DESC LIMIT ${len(conditions) + 1}"
        return page(await self._rows(sql, [*(v for _, v in conditions), limit + 1]), limit)

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with translated(self.where):
            async with self._connection() as conn:
                return list(await conn.fetch(sql, *args))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[TextConnection]:
        """A pooled connection; its strings go in encoded and come out decoded
        (postgres_text: U+0000 stored and answered like any character)."""
        if self._pool is None:
            raise StoreClosed("the server database is closed")
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            yield TextConnection(conn)


async def _upsert(conn: TextConnection, items: Sequence[Item]) -> list[Detail | None]:
    ids = sorted({item["externalId"] for _, item in items})
    found = await conn.fetch(
        f"{_SELECT} WHERE external_id = ANY($1::text[]) ORDER BY external_id FOR UPDATE", ids
    )
    stored = {d["externalId"]: d for d in map(selected, found)}
    details, changed = merge(stored, items, now_ms())
    new = [d for d in changed if d["externalId"] not in stored]
    if new:
        await conn.executemany(_INSERT, [row(d) for d in new])
        ours = await conn.fetchval(
            "SELECT count(*) FROM traces WHERE id = ANY($1::text[])", [d["id"] for d in new]
        )
        if ours != len(new):
            raise _LostRace
    updated = [_update(row(d)) for d in changed if d["externalId"] in stored]
    if updated:
        await conn.executemany(_UPDATE, updated)
    return details


async def _locked_seq(conn: TextConnection, external_id: str, namespace: str) -> int | None:
    """The seq of a trace of `namespace`, its row locked until the transaction ends."""
    seq = await conn.fetchval(
        "SELECT seq FROM traces WHERE external_id = $1 AND namespace_id = $2 FOR UPDATE",
        external_id,
        namespace,
    )
    return None if seq is None else int(seq)


def _update(values: Sequence[Any]) -> list[Any]:
    """A row's values as `_UPDATE`'s parameters."""
    return [*(values[n] for n in _CHANGED), values[_KEY]]


@contextlib.contextmanager
def translated(where: str, url: str | None = None) -> Iterator[None]:
    """asyncpg's and the network's errors as StoreError (busy: worth retrying); `url`'s
    password, should a message quote it, masked."""
    try:
        yield
    except StoreError:
        raise
    except asyncpg.PostgresError as exc:
        state = exc.sqlstate or ""
        busy = state.startswith(_BUSY_CLASSES)
        text = f"database {where}: {_masked(str(exc), url)} (SQLSTATE {state})"
        raise StoreError(text, busy=busy) from None
    except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
        # cannot connect, the connection went away, no free connection in time
        text = f"database {where}: {type(exc).__name__}: {_masked(str(exc), url)}"
        raise StoreError(text, busy=not isinstance(exc, asyncpg.ClientConfigurationError)) from None
    except ValueError as exc:  # a URL asyncpg cannot parse
        raise StoreError(f"database {where}: {_masked(str(exc), url)}") from None


def _masked(text: str, url: str | None) -> str:
    if url is None:
        return text
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "[redacted]")
    return text
