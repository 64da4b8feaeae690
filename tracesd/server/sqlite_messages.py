"""A trace's messages and their parts in the SQLite storage (the merge rules:
`message_rules`). The functions here run inside the caller's transaction
(`SQLiteStorage`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from tracesd.server.message_rules import FIELDS, Message, State, dump, message, plan, values

_SELECT = (
    "SELECT m.rowid, m.external_id, m.ord, "
    + ", ".join(f"m.{column}" for _, column in FIELDS)
    + ", p.part_key, p.entry_order, p.idx, p.body FROM messages m"
)
_UPSERT = (
    "INSERT INTO messages (trace_seq, external_id, ord, "
    + ", ".join(column for _, column in FIELDS)
    + ") VALUES (?, ?, ?, "
    + ", ".join("?" for _ in FIELDS)
    + ") ON CONFLICT (trace_seq, external_id) DO UPDATE SET ord = excluded.ord, "
    + ", ".join(f"{column} = excluded.{column}" for _, column in FIELDS)
)
_UPSERT_PART = (
    "INSERT INTO parts (message, part_key, entry_order, idx, body) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (message, part_key) DO UPDATE SET entry_order = excluded.entry_order,"
    " idx = excluded.idx, body = excluded.body"
)
#: SQLite's bound on parameters in one statement, with room to spare
_CHUNK = 500


async def store(db: aiosqlite.Connection, trace: int, entries: Sequence[Mapping[str, Any]]) -> int:
    """Merge validated entries into the messages of trace `trace` (its seq); how many
    distinct messages they name. Updates the trace's message count."""
    ids = list(dict.fromkeys(entry["externalId"] for entry in entries))
    todo = plan(await _load(db, trace, ids), entries)
    if todo.messages:
        await db.executemany(
            _UPSERT,
            [[trace, key, fields["order"], *values(fields)] for key, fields in todo.messages],
        )
    if todo.parts:
        rowids = await _rowids(db, trace, ids)
        await db.executemany(
            _UPSERT_PART,
            [(rowids[key], part_key, *p[:2], dump(p[2])) for key, part_key, p in todo.parts],
        )
    if todo.added:
        await db.execute(
            "UPDATE traces SET message_count ="
            " (SELECT count(*) FROM messages WHERE trace_seq = ?) WHERE seq = ?",
            (trace, trace),
        )
    return len(ids)


async def read(
    db: aiosqlite.Connection, trace: int, *, parts: bool, ids: Sequence[str] | None = None
) -> list[Message]:
    """The messages of trace `trace` (or only `ids`), in order, with parts if asked."""
    where = " WHERE m.trace_seq = ?"
    args: list[Any] = [trace]
    if ids is not None:
        where += f" AND m.external_id IN ({', '.join('?' * len(ids))})"
        args += ids
    if parts:
        sql = _SELECT + " LEFT JOIN parts p ON p.message = m.rowid" + where
        sql += " ORDER BY m.ord, m.rowid, p.entry_order, p.idx"
    else:
        sql = _SELECT.replace("p.part_key, p.entry_order, p.idx, p.body", "NULL, NULL, NULL, NULL")
        sql += where + " ORDER BY m.ord, m.rowid"
    found: dict[int, Message] = {}
    for row in await db.execute_fetchall(sql, args):
        message = found.get(row[0])
        if message is None:
            message = found[row[0]] = _message(row)
            if parts:
                message["parts"] = []
        if row[-1] is not None:
            message["parts"].append(json.loads(row[-1]))
    return list(found.values())


async def delete_all(db: aiosqlite.Connection, trace: int) -> None:
    """Delete every message of trace `trace` with its parts."""
    await db.execute(
        "DELETE FROM parts WHERE message IN (SELECT rowid FROM messages WHERE trace_seq = ?)",
        (trace,),
    )
    await db.execute("DELETE FROM messages WHERE trace_seq = ?", (trace,))


async def _load(db: aiosqlite.Connection, trace: int, ids: Sequence[str]) -> dict[str, State]:
    """The stored state of messages `ids` of trace `trace` (those that exist)."""
    states: dict[str, State] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        sql = (
            _SELECT + " LEFT JOIN parts p ON p.message = m.rowid WHERE m.trace_seq = ?"
            f" AND m.external_id IN ({', '.join('?' * len(chunk))})"
        )
        for row in await db.execute_fetchall(sql, [trace, *chunk]):
            key = row[1]
            state = states.get(key)
            if state is None:
                message = _message(row)
                del message["externalId"]
                state = states[key] = State(message)
            if row[-4] is not None:
                state.parts[row[-4]] = (row[-3], row[-2], json.loads(row[-1]))
    return states


async def _rowids(db: aiosqlite.Connection, trace: int, ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        sql = (
            "SELECT external_id, rowid FROM messages WHERE trace_seq = ?"
            f" AND external_id IN ({', '.join('?' * len(chunk))})"
        )
        found.update((row[0], row[1]) for row in await db.execute_fetchall(sql, [trace, *chunk]))
    return found


def _message(row: Sequence[Any]) -> Message:
    """A row of `_SELECT` as a message without parts, in the API's field order."""
    return message(row[1], row[2], row[3 : 3 + len(FIELDS)])
