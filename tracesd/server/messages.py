"""A trace's messages and their parts, as the Traces CLI uploads and pulls them.

The CLI splits one agent message into several batch entries with the same message
externalId (one Claude API message per content block: a `tool_call` entry at order 2 and
a `text` entry at order 3), so an entry never replaces a stored message: it is merged.

Merge rule, entry by entry in request order:
- message fields the entry has (sourceKey, role, textContent, model, timestamp,
  tokenUsage) replace the stored ones; those it leaves out are kept;
- the message's order is its first (lowest) order;
- each part is upserted by its externalId (a part without one by its place: the entry's
  order and its index there) and placed by (the entry's order, its index there), so the
  parts of a split message read back in the order the agent wrote them.

Storing the same entries again changes nothing. Only the changed messages and parts are
written. The functions here run inside the caller's transaction (`TraceDB`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

Message = dict[str, Any]
"""A message in API terms: externalId, role, order, ... and `parts` when asked for."""

#: (API field, column) of the message fields an entry may set
FIELDS: tuple[tuple[str, str], ...] = (
    ("sourceKey", "source_key"),
    ("role", "role"),
    ("textContent", "text_content"),
    ("model", "model"),
    ("timestamp", "timestamp"),
    ("tokenUsage", "token_usage"),
)
PART_FIELDS = ("externalId", "sourceKey", "type", "content", "order", "tokenUsage")
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


@dataclass(slots=True)
class _State:
    """One message: its fields (order included) and its parts by key."""

    fields: dict[str, Any]
    parts: dict[str, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(dict(self.fields), dict(self.parts))


async def store(db: aiosqlite.Connection, trace: int, entries: Sequence[Mapping[str, Any]]) -> int:
    """Merge validated entries into the messages of trace `trace` (its seq); how many
    distinct messages they name. Updates the trace's message count."""
    ids = list(dict.fromkeys(entry["externalId"] for entry in entries))
    stored = await _load(db, trace, ids)
    merged = {key: state.copy() for key, state in stored.items()}
    for entry in entries:
        _apply(merged, entry)
    changed = [key for key in ids if merged[key].fields != _fields_of(stored.get(key))]
    if changed:
        await db.executemany(_UPSERT, [_row(trace, key, merged[key].fields) for key in changed])
    new_parts = [
        (key, part_key, placed)
        for key in ids
        for part_key, placed in merged[key].parts.items()
        if (stored.get(key) or _State({})).parts.get(part_key) != placed
    ]
    if new_parts:
        rowids = await _rowids(db, trace, ids)
        await db.executemany(
            _UPSERT_PART,
            [(rowids[key], part_key, *p[:2], _dump(p[2])) for key, part_key, p in new_parts],
        )
    if any(key not in stored for key in ids):
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


def _apply(merged: dict[str, _State], entry: Mapping[str, Any]) -> None:
    key = entry["externalId"]
    order = int(entry["order"])
    state = merged.get(key)
    if state is None:
        state = merged[key] = _State({"order": order})
    fields = state.fields
    fields["order"] = min(order, fields.get("order", order))
    for name, _ in FIELDS:
        if name in entry:
            fields[name] = entry[name]
    for index, part in enumerate(entry.get("parts") or ()):
        clean = {name: part[name] for name in PART_FIELDS if name in part}
        part_key = part.get("externalId") or f"@{order}:{index}"
        state.parts[part_key] = (order, index, clean)


def _fields_of(state: _State | None) -> dict[str, Any] | None:
    return None if state is None else state.fields


async def _load(db: aiosqlite.Connection, trace: int, ids: Sequence[str]) -> dict[str, _State]:
    """The stored state of messages `ids` of trace `trace` (those that exist)."""
    states: dict[str, _State] = {}
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
                state = states[key] = _State(message)
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
    values: dict[str, Any] = {"externalId": row[1], "order": row[2]}
    for (name, _), value in zip(FIELDS, row[3 : 3 + len(FIELDS)], strict=True):
        if value is not None:
            values[name] = json.loads(value) if name == "tokenUsage" else value
    return {name: values[name] for name in _ORDER if name in values}


_ORDER = (
    "externalId",
    "sourceKey",
    "role",
    "textContent",
    "model",
    "order",
    "timestamp",
    "tokenUsage",
)


def _row(trace: int, key: str, fields: Mapping[str, Any]) -> list[Any]:
    values: list[Any] = [trace, key, fields["order"]]
    for name, _ in FIELDS:
        value = fields.get(name)
        values.append(_dump(value) if name == "tokenUsage" and value is not None else value)
    return values


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
