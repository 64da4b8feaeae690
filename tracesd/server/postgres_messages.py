"""A trace's messages and their parts in the PostgreSQL storage (the merge rules:
`message_rules`). The functions here run inside the caller's transaction
(`PostgresStorage`), which has locked the trace's row first: the writes to one trace's
messages take turns, across every server process on the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from tracesd.server.message_rules import FIELDS, Message, State, dump, message, plan, values
from tracesd.server.storage import number

_COLUMNS = ", ".join(column for _, column in FIELDS)
_MESSAGE = f"SELECT m.id, m.external_id, m.ord, {', '.join(f'm.{c}' for _, c in FIELDS)}"
_SELECT = (
    _MESSAGE + ", p.part_key, p.entry_order, p.idx, p.body FROM messages m"
    " LEFT JOIN parts p ON p.message = m.id"
)
#: one row per message: the parts' columns read as NULL
_SELECT_BARE = _MESSAGE + ", NULL, NULL, NULL, NULL FROM messages m"
_UPSERT = (
    f"INSERT INTO messages (trace_seq, external_id, ord, {_COLUMNS}) VALUES ("
    + ", ".join(f"${n}" for n in range(1, 4 + len(FIELDS)))
    + ") ON CONFLICT (trace_seq, external_id) DO UPDATE SET ord = excluded.ord, "
    + ", ".join(f"{column} = excluded.{column}" for _, column in FIELDS)
)
_UPSERT_PART = (
    "INSERT INTO parts (message, part_key, entry_order, idx, body) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (message, part_key) DO UPDATE SET entry_order = excluded.entry_order,"
    " idx = excluded.idx, body = excluded.body"
)


async def store(conn: asyncpg.Connection, trace: int, entries: Sequence[Mapping[str, Any]]) -> int:
    """Merge validated entries into the messages of trace `trace` (its seq); how many
    distinct messages they name. Updates the trace's message count."""
    ids = list(dict.fromkeys(entry["externalId"] for entry in entries))
    todo = plan(await _load(conn, trace, ids), entries)
    if todo.messages:
        await conn.executemany(
            _UPSERT, [(trace, key, f["order"], *values(f)) for key, f in todo.messages]
        )
    if todo.parts:
        found = await conn.fetch(
            "SELECT external_id, id FROM messages WHERE trace_seq = $1"
            " AND external_id = ANY($2::text[])",
            trace,
            ids,
        )
        rowids = {row[0]: row[1] for row in found}
        await conn.executemany(
            _UPSERT_PART,
            [(rowids[key], part_key, *p[:2], dump(p[2])) for key, part_key, p in todo.parts],
        )
    if todo.added:
        await conn.execute(
            "UPDATE traces SET message_count ="
            " (SELECT count(*) FROM messages WHERE trace_seq = $1) WHERE seq = $1",
            trace,
        )
    return len(ids)


async def read(
    conn: asyncpg.Connection, trace: int, *, parts: bool, ids: Sequence[str] | None = None
) -> list[Message]:
    """The messages of trace `trace` (or only `ids`), in order, with parts if asked."""
    sql = (_SELECT if parts else _SELECT_BARE) + " WHERE m.trace_seq = $1"
    args: list[Any] = [trace]
    if ids is not None:
        sql += " AND m.external_id = ANY($2::text[])"
        args.append(list(ids))
    sql += " ORDER BY m.ord, m.id" + (", p.entry_order, p.idx" if parts else "")
    found: dict[int, Message] = {}
    for row in await conn.fetch(sql, *args):
        stored = found.get(row[0])
        if stored is None:
            stored = found[row[0]] = _message(row)
            if parts:
                stored["parts"] = []
        if row[-1] is not None:
            stored["parts"].append(json.loads(row[-1]))
    return list(found.values())


async def _load(conn: asyncpg.Connection, trace: int, ids: Sequence[str]) -> dict[str, State]:
    """The stored state of messages `ids` of trace `trace` (those that exist)."""
    states: dict[str, State] = {}
    sql = _SELECT + " WHERE m.trace_seq = $1 AND m.external_id = ANY($2::text[])"
    for row in await conn.fetch(sql, trace, list(ids)):
        state = states.get(row[1])
        if state is None:
            fields = _message(row)
            del fields["externalId"]
            state = states[row[1]] = State(fields)
        if row[-4] is not None:
            state.parts[row[-4]] = (row[-3], row[-2], json.loads(row[-1]))
    return states


def _message(row: Sequence[Any]) -> Message:
    return message(row[1], row[2], [number(v) for v in row[3 : 3 + len(FIELDS)]])
