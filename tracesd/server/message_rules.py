"""How message entries merge into a trace's stored messages (both storage engines).

The Traces CLI splits one agent message into several batch entries with the same message
externalId (one Claude API message per content block: a `tool_call` entry at order 2 and
a `text` entry at order 3), so an entry never replaces a stored message: it is merged.

Merge rule, entry by entry in request order:
- message fields the entry has (sourceKey, role, textContent, model, timestamp,
  tokenUsage) replace the stored ones; those it leaves out are kept;
- the message's order is its first (lowest) order;
- each part is upserted by its externalId (a part without one by its place: the entry's
  order and its index there) and placed by (the entry's order, its index there), so the
  parts of a split message read back in the order the agent wrote them.

Storing the same entries again changes nothing: `plan` names only the changed messages
and parts, which the engine writes inside its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
#: a part as stored: (the order of the entry that carried it, its index there, the part)
Placed = tuple[int, int, dict[str, Any]]


@dataclass(slots=True)
class State:
    """One message: its fields (order included) and its parts by key."""

    fields: dict[str, Any]
    parts: dict[str, Placed] = field(default_factory=dict)

    def copy(self) -> State:
        return State(dict(self.fields), dict(self.parts))


@dataclass(frozen=True, slots=True)
class Plan:
    """What storing some entries changes."""

    #: the distinct message externalIds the entries name, in first-seen order
    ids: list[str]
    #: (externalId, fields with order) of each message to upsert
    messages: list[tuple[str, dict[str, Any]]]
    #: (message externalId, part key, placed part) of each part to upsert
    parts: list[tuple[str, str, Placed]]
    #: some message is new: the trace's message count changes
    added: bool


def plan(stored: Mapping[str, State], entries: Sequence[Mapping[str, Any]]) -> Plan:
    """Merge validated entries into `stored` (the state of the messages they name that
    exist); what to write."""
    ids = list(dict.fromkeys(entry["externalId"] for entry in entries))
    merged = {key: state.copy() for key, state in stored.items()}
    for entry in entries:
        _apply(merged, entry)
    messages = [
        (key, merged[key].fields)
        for key in ids
        if key not in stored or merged[key].fields != stored[key].fields
    ]
    parts = [
        (key, part_key, placed)
        for key in ids
        for part_key, placed in merged[key].parts.items()
        if (stored.get(key) or State({})).parts.get(part_key) != placed
    ]
    return Plan(ids, messages, parts, any(key not in stored for key in ids))


def _apply(merged: dict[str, State], entry: Mapping[str, Any]) -> None:
    key = entry["externalId"]
    order = int(entry["order"])
    state = merged.get(key)
    if state is None:
        state = merged[key] = State({"order": order})
    fields = state.fields
    fields["order"] = min(order, fields.get("order", order))
    for name, _ in FIELDS:
        if name in entry:
            fields[name] = entry[name]
    for index, part in enumerate(entry.get("parts") or ()):
        clean = {name: part[name] for name in PART_FIELDS if name in part}
        part_key = part.get("externalId") or f"@{order}:{index}"
        state.parts[part_key] = (order, index, clean)


def message(external_id: str, order: int, values: Sequence[Any]) -> Message:
    """A stored message (the values of FIELDS' columns, tokenUsage as JSON text) in the
    API's field order, without parts."""
    found: dict[str, Any] = {"externalId": external_id, "order": order}
    for (name, _), value in zip(FIELDS, values, strict=True):
        if value is not None:
            found[name] = json.loads(value) if name == "tokenUsage" else value
    return {name: found[name] for name in _ORDER if name in found}


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


def values(fields: Mapping[str, Any]) -> list[Any]:
    """A message's fields as the values of FIELDS' columns (tokenUsage as JSON text)."""
    out: list[Any] = []
    for name, _ in FIELDS:
        value = fields.get(name)
        out.append(dump(value) if name == "tokenUsage" and value is not None else value)
    return out


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
