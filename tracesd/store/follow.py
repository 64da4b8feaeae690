"""The message follower's durable state: where each followed session was read to, the events
named so far, and the messages the server has not acknowledged yet.

A read of a session is recorded in one transaction: the new position, the events named, and
the messages queued for them. So after `kill -9` the follower resumes from the last recorded
position with every message it read either queued or acknowledged: nothing is read twice
into the queue, nothing read is lost. A queued message leaves the queue when the server
acknowledges that very version of it (`seq`); one the server refused for good stays, marked
with the reason, until a later read changes it.

Which traces are followed: those in the sync scope that the server has stored (their trace
was acknowledged once), of agents tracesd reads messages for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from tracesd.messages.identity import Known
from tracesd.messages.readers import Position
from tracesd.models import TRACE_COLUMNS, Trace
from tracesd.store.database import Store

#: what a scope adds to a query of the traces `t` (INTERFACE section 7)
_IN_SCOPE = {"all": "", "shared": " AND t.shared_url IS NOT NULL"}
#: a trace the server has stored (its first version was acknowledged)
_ON_SERVER = "o.sent_version > 0"


@dataclass(frozen=True, slots=True)
class Followed:
    trace: Trace
    position: Position


@dataclass(frozen=True, slots=True)
class Name:
    """An event named under (message key, part key): `n`-th under them."""

    n: int
    known: Known
    digest: str


@dataclass(frozen=True, slots=True)
class Queued:
    """A message for the queue: its part's id (one part per entry) and its entry."""

    part_id: str
    order: int
    body: str


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """What one read of a session changes, written in one transaction."""

    position: Position
    #: (message key, part key) -> names to insert or replace
    names: list[tuple[tuple[str, str], Name]]
    queued: list[Queued]
    oversized: int


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued message, as claimed for sending."""

    seq: int
    part_id: str
    body: str


@dataclass(frozen=True, slots=True)
class MessageCounts:
    followed: int
    pending: int
    refused: int
    sent: int
    oversized: int
    unreadable: int


class FollowStore:
    def __init__(self, store: Store, *, scope: str) -> None:
        if scope not in _IN_SCOPE:
            raise ValueError(f"unknown sync scope {scope!r}")
        self._store = store
        self._scope = _IN_SCOPE[scope]

    async def followed(
        self, agents: Collection[str], trace_ids: Collection[str] | None = None
    ) -> list[Followed]:
        """The followed traces (all, or those of `trace_ids`), with where they were read to."""
        if not agents:
            return []
        columns = ", ".join(f"t.{c}" for c in TRACE_COLUMNS)
        args: list[object] = list(agents)
        only = ""
        if trace_ids is not None:
            if not trace_ids:
                return []
            only = f" AND t.id IN ({', '.join('?' * len(trace_ids))})"
            args += list(trace_ids)
        rows = await self._store.query(
            f"SELECT {columns}, f.offset AS f_offset, f.state AS f_state, f.file AS f_file"
            " FROM traces t JOIN tracesd_outbox o ON o.trace_id = t.id"
            " LEFT JOIN tracesd_message_follow f ON f.trace_id = t.id"
            f" WHERE {_ON_SERVER}{self._scope}"
            f" AND t.agent_id IN ({', '.join('?' * len(agents))}){only}",
            args,
        )
        return [
            Followed(
                Trace(**{c: row[c] for c in TRACE_COLUMNS}),
                Position(
                    row["f_offset"] or 0,
                    json.loads(row["f_state"]) if row["f_state"] else {},
                    row["f_file"] or "",
                ),
            )
            for row in rows
        ]

    async def names(
        self, trace_id: str, groups: Iterable[tuple[str, str]] | None
    ) -> dict[tuple[str, str], list[Name]]:
        """The events named under each group (all of the trace's when `groups` is None),
        in naming order."""
        wanted = None if groups is None else list(dict.fromkeys(groups))
        rows = []
        if wanted is None:
            rows = await self._store.query(
                "SELECT * FROM tracesd_message_names WHERE trace_id = ?", (trace_id,)
            )
        else:
            for start in range(0, len(wanted), 200):
                chunk = wanted[start : start + 200]
                match = " OR ".join("(message_key = ? AND part_key = ?)" for _ in chunk)
                rows += await self._store.query(
                    f"SELECT * FROM tracesd_message_names WHERE trace_id = ? AND ({match})",
                    (trace_id, *(k for group in chunk for k in group)),
                )
        named: dict[tuple[str, str], list[Name]] = {}
        for row in sorted(rows, key=lambda r: r["n"]):
            known = Known(_part_key(row["part_key"], row["n"]), row["signature"], row["ord"])
            named.setdefault((row["message_key"], row["part_key"]), []).append(
                Name(row["n"], known, row["digest"])
            )
        return named

    async def record(self, trace_id: str, read: ReadRecord) -> None:
        """One read of a session: position, names and queued messages, together."""
        now = int(time.time() * 1000)
        position = read.position
        async with self._store.atomic() as tx:
            await tx.execute_many(
                "INSERT OR REPLACE INTO tracesd_message_names"
                " (trace_id, message_key, part_key, n, signature, ord, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (trace_id, mk, pk, n.n, n.known.signature, n.known.order, n.digest)
                    for (mk, pk), n in read.names
                ),
            )
            await tx.execute_many(
                "INSERT OR REPLACE INTO tracesd_message_outbox (trace_id, part_id, ord, body)"
                " VALUES (?, ?, ?, ?)",
                ((trace_id, q.part_id, q.order, q.body) for q in read.queued),
            )
            await tx.execute_many(
                "INSERT INTO tracesd_message_follow"
                " (trace_id, offset, file, state, read_total, oversized_total, read_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET"
                " offset = excluded.offset, file = excluded.file, state = excluded.state,"
                " read_total = read_total + excluded.read_total,"
                " oversized_total = oversized_total + excluded.oversized_total,"
                " error = NULL, read_at = excluded.read_at",
                [
                    (
                        trace_id,
                        position.offset,
                        position.file,
                        json.dumps(position.state, separators=(",", ":")),
                        len(read.queued),
                        read.oversized,
                        now,
                    )
                ],
            )

    async def unreadable(self, trace_id: str, reason: str) -> None:
        """The session could not be read: kept for status until a read succeeds."""
        await self._store.execute_many(
            "INSERT INTO tracesd_message_follow (trace_id, error) VALUES (?, ?)"
            " ON CONFLICT (trace_id) DO UPDATE SET error = excluded.error",
            [(trace_id, reason)],
        )

    async def waiting(self, skip: Collection[str] = ()) -> list[str]:
        """Followed traces with messages to send, those with the oldest queued first."""
        rows = await self._store.query(
            "SELECT q.trace_id FROM tracesd_message_outbox q"
            " JOIN traces t ON t.id = q.trace_id JOIN tracesd_outbox o ON o.trace_id = t.id"
            f" WHERE q.refused IS NULL AND {_ON_SERVER}{self._scope}"
            " GROUP BY q.trace_id ORDER BY MIN(q.seq)"
        )
        return [row["trace_id"] for row in rows if row["trace_id"] not in skip]

    async def claim(self, trace_id: str, limit: int) -> list[Pending]:
        """Up to `limit` of a trace's queued messages, in the session's order."""
        rows = await self._store.query(
            "SELECT seq, part_id, body FROM tracesd_message_outbox"
            " WHERE trace_id = ? AND refused IS NULL ORDER BY ord, seq LIMIT ?",
            (trace_id, limit),
        )
        return [Pending(row["seq"], row["part_id"], row["body"]) for row in rows]

    async def ack(self, trace_id: str, seqs: Collection[int]) -> None:
        """The server stored these versions: they leave the queue (a newer one stays)."""
        if not seqs:
            return
        async with self._store.atomic() as tx:
            await tx.execute_many(
                "DELETE FROM tracesd_message_outbox WHERE seq = ?", ((s,) for s in seqs)
            )
            await tx.execute_many(
                "UPDATE tracesd_message_follow SET sent_total = sent_total + ?, sent_at = ?"
                " WHERE trace_id = ?",
                [(len(seqs), int(time.time() * 1000), trace_id)],
            )

    async def refuse(self, trace_id: str, refused: Iterable[tuple[int, str]]) -> None:
        """The server refused these for good: kept, not sent again until they change."""
        rows = list(refused)
        if not rows:
            return
        async with self._store.atomic() as tx:
            await tx.execute_many(
                "UPDATE tracesd_message_outbox SET refused = ? WHERE seq = ?",
                ((reason, seq) for seq, reason in rows),
            )
            await tx.execute_many(
                "UPDATE tracesd_message_follow SET refused_total = refused_total + ?"
                " WHERE trace_id = ?",
                [(len(rows), trace_id)],
            )

    async def counts(self, agents: Collection[str]) -> MessageCounts:
        """Followed traces and their messages, in scope."""
        marks = ", ".join("?" * len(agents)) or "NULL"
        followed = (
            "SELECT t.id FROM traces t JOIN tracesd_outbox o ON o.trace_id = t.id"
            f" WHERE {_ON_SERVER}{self._scope} AND t.agent_id IN ({marks})"
        )
        rows = await self._store.query(
            f"SELECT (SELECT COUNT(*) FROM ({followed})),"
            " (SELECT COUNT(*) FROM tracesd_message_outbox q"
            f" WHERE q.refused IS NULL AND q.trace_id IN ({followed})),"
            " (SELECT COUNT(*) FROM tracesd_message_outbox q"
            f" WHERE q.refused IS NOT NULL AND q.trace_id IN ({followed})),"
            " (SELECT TOTAL(sent_total) FROM tracesd_message_follow),"
            " (SELECT TOTAL(oversized_total) FROM tracesd_message_follow),"
            " (SELECT COUNT(*) FROM tracesd_message_follow f"
            f" WHERE f.error IS NOT NULL AND f.trace_id IN ({followed}))",
            [*agents, *agents, *agents, *agents],
        )
        row = rows[0]
        return MessageCounts(*(int(row[i]) for i in range(6)))

    async def per_trace(
        self, trace_ids: Collection[str], agents: Collection[str]
    ) -> dict[str, tuple[int, int]]:
        """Which of `trace_ids` are followed, each with its messages (pending, sent)."""
        if not trace_ids or not agents:
            return {}
        rows = await self._store.query(
            "SELECT t.id, COALESCE(f.sent_total, 0) AS sent,"
            " (SELECT COUNT(*) FROM tracesd_message_outbox q"
            "  WHERE q.trace_id = t.id AND q.refused IS NULL) AS pending"
            " FROM traces t JOIN tracesd_outbox o ON o.trace_id = t.id"
            " LEFT JOIN tracesd_message_follow f ON f.trace_id = t.id"
            f" WHERE {_ON_SERVER}{self._scope}"
            f" AND t.agent_id IN ({', '.join('?' * len(agents))})"
            f" AND t.id IN ({', '.join('?' * len(trace_ids))})",
            [*agents, *trace_ids],
        )
        return {row["id"]: (row["pending"], row["sent"]) for row in rows}


def _part_key(base: str, n: int) -> str:
    return base if n == 0 else f"{base}#{n}"
