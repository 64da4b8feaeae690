"""The reference server's PostgreSQL layout, and its migrations.

`schema_version` holds one row per applied version. Each migration runs in its own
transaction that first takes a transaction-scoped advisory lock and re-reads the version:
servers starting at the same moment wait for each other and each version is applied once.

Versions: 1 the traces (one row per externalId, owned by a namespace, `seq` the insertion
order that cursors page by), their messages and the messages' parts. Every list filter
has an index ending in `seq`, so "filter = ... AND seq < cursor ORDER BY seq DESC" is one
index range scan.
"""

from __future__ import annotations

import asyncpg

from tracesd.errors import StoreError

#: the advisory lock every migration holds (any fixed bigint; this one spells "tracesd")
LOCK_KEY = 0x7472616365736400

_V1 = (
    # seq: insertion order, never reused (an identity: a deleted newest row's seq is not
    # handed out again, so a cursor's "seq below N" keeps its meaning)
    "CREATE TABLE traces ("
    " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL UNIQUE,"
    " external_id text NOT NULL UNIQUE, namespace_id text NOT NULL, agent_id text NOT NULL,"
    " title text, preview text, timestamp bigint, project_path text, project_name text,"
    " model text, token_usage text, visibility text,"
    " git_remote_url text, git_branch text, git_ref text,"
    " related_to text, relationship_type text, source_created_at numeric,"
    " message_count integer NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL, updated_at bigint NOT NULL)",
    "CREATE INDEX traces_namespace ON traces (namespace_id, seq)",
    "CREATE INDEX traces_remote ON traces (namespace_id, git_remote_url, seq)",
    "CREATE INDEX traces_remote_branch ON traces (namespace_id, git_remote_url, git_branch, seq)",
    "CREATE INDEX traces_agent ON traces (namespace_id, agent_id, seq)",
    # one row per message externalId of a trace; ord is the message's first order
    "CREATE TABLE messages ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " trace_seq bigint NOT NULL REFERENCES traces (seq) ON DELETE CASCADE,"
    " external_id text NOT NULL, ord bigint NOT NULL, role text NOT NULL, source_key text,"
    " text_content text, model text, timestamp numeric, token_usage text,"
    " UNIQUE (trace_seq, external_id))",
    "CREATE INDEX messages_order ON messages (trace_seq, ord, id)",
    # one row per part of a message, keyed by its externalId (or its place when it has
    # none); placed by the order of the batch entry that carried it, then its index there
    "CREATE TABLE parts ("
    " message bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,"
    " part_key text NOT NULL, entry_order bigint NOT NULL, idx integer NOT NULL,"
    " body text NOT NULL, PRIMARY KEY (message, part_key))",
)
#: the statements of each version, oldest first (version N is MIGRATIONS[N - 1])
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


async def prepare(conn: asyncpg.Connection, where: str) -> int:
    """Bring the schema to SCHEMA_VERSION, one version per transaction; how many versions
    this call applied (0 when another server had done it)."""
    applied = 0
    for version, statements in enumerate(MIGRATIONS, start=1):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{where} has server schema version {current}, newer than the "
                    f"{SCHEMA_VERSION} this tracesd supports; upgrade tracesd"
                )
            if current >= version:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            applied += 1
    return applied
