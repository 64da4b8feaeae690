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
import sqlite3
import time
from collections.abc import Collection
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
class Claim:
    """Queued messages claimed for one send pass, by trace."""

    pending: dict[str, list[Pending]]
    #: every queued message was claimed (none left beyond the pass's bounds)
    complete: bool


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
        self, wanted: dict[str, list[tuple[str, str]] | None]
    ) -> dict[tuple[str, str, str], list[Name]]:
        """The events named so far under the groups wanted, per trace (all of a trace's when
        its groups are None: a whole re-read), by (trace, message key, part key), in naming
        order. Each group is looked up by the primary key, never by scanning a trace."""
        rows: list[sqlite3.Row] = []
        keyed = [(t, g) for t, groups in wanted.items() if groups is not None for g in groups]
        keyed = list(dict.fromkeys(keyed))
        for start in range(0, len(keyed), 300):
            chunk = keyed[start : start + 300]
            rows += await self._store.query(
                "WITH want (t, m, p) AS (VALUES "
                + ", ".join("(?, ?, ?)" for _ in chunk)
                + ") SELECT n.* FROM want CROSS JOIN tracesd_message_names n"
                " ON n.trace_id = want.t AND n.message_key = want.m AND n.part_key = want.p",
                [v for trace_id, (m, p) in chunk for v in (trace_id, m, p)],
            )
        for trace_id in (t for t, groups in wanted.items() if groups is None):
            rows += await self._store.query(
                "SELECT * FROM tracesd_message_names WHERE trace_id = ?", (trace_id,)
            )
        named: dict[tuple[str, str, str], list[Name]] = {}
        for row in sorted(rows, key=lambda r: r["n"]):
            known = Known(_part_key(row["part_key"], row["n"]), row["signature"], row["ord"])
            named.setdefault((row["trace_id"], row["message_key"], row["part_key"]), []).append(
                Name(row["n"], known, row["digest"])
            )
        return named

    async def record(
        self, reads: list[tuple[str, ReadRecord]], unreadable: list[tuple[str, str]]
    ) -> None:
        """Reads of sessions (position, names, queued messages) and the sessions that could
        not be read (kept for status until a read succeeds), in one transaction."""
        if not reads and not unreadable:
            return
        now = int(time.time() * 1000)
        async with self._store.atomic() as tx:
            await tx.execute_many(
                "INSERT OR REPLACE INTO tracesd_message_names"
                " (trace_id, message_key, part_key, n, signature, ord, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (trace_id, mk, pk, n.n, n.known.signature, n.known.order, n.digest)
                    for trace_id, read in reads
                    for (mk, pk), n in read.names
                ),
            )
            await tx.execute_many(
                "INSERT OR REPLACE INTO tracesd_message_outbox"
                " (trace_id, part_id, ord, body, size) VALUES (?, ?, ?, ?, ?)",
                (
                    (trace_id, q.part_id, q.order, q.body, len(q.body.encode()))
                    for trace_id, read in reads
                    for q in read.queued
                ),
            )
            await tx.execute_many(
                "INSERT INTO tracesd_message_follow"
                " (trace_id, offset, file, state, read_total, oversized_total, read_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET"
                " offset = excluded.offset, file = excluded.file, state = excluded.state,"
                " read_total = read_total + excluded.read_total,"
                " oversized_total = oversized_total + excluded.oversized_total,"
                " error = NULL, read_at = excluded.read_at",
                (
                    (
                        trace_id,
                        read.position.offset,
                        read.position.file,
                        json.dumps(read.position.state, separators=(",", ":")),
                        len(read.queued),
                        read.oversized,
                        now,
                    )
                    for trace_id, read in reads
                ),
            )
            await tx.execute_many(
                "INSERT INTO tracesd_message_follow (trace_id, error) VALUES (?, ?)"
                " ON CONFLICT (trace_id) DO UPDATE SET error = excluded.error",
                unreadable,
            )

    async def claim(self, max_rows: int, max_bytes: int) -> Claim:
        """Queued messages of followed traces, a fair share of each (their first ones,
        round robin across traces), at most `max_rows` and about `max_bytes` of JSON (at
        least one), per trace in the session's order."""
        heads = await self._store.query(
            "SELECT trace_id, seq, part_id, size FROM ("
            " SELECT q.trace_id, q.seq, q.part_id, q.size, ROW_NUMBER()"
            "  OVER (PARTITION BY q.trace_id ORDER BY q.ord, q.seq) AS rank"
            " FROM tracesd_message_outbox q JOIN traces t ON t.id = q.trace_id"
            " JOIN tracesd_outbox o ON o.trace_id = t.id"
            f" WHERE q.refused IS NULL AND {_ON_SERVER}{self._scope}"
            ") ORDER BY rank, trace_id LIMIT ?",
            (max_rows,),
        )
        chosen: list[sqlite3.Row] = []
        size = 0
        for row in heads:
            if chosen and size + row["size"] > max_bytes:
                break
            chosen.append(row)
            size += row["size"]
        bodies: dict[int, str] = {}
        seqs = [row["seq"] for row in chosen]
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            for row in await self._store.query(
                "SELECT seq, body FROM tracesd_message_outbox"
                f" WHERE seq IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                bodies[row["seq"]] = row["body"]
        claimed: dict[str, list[Pending]] = {}
        for row in chosen:
            if row["seq"] in bodies:  # replaced meanwhile: its new version goes next pass
                claimed.setdefault(row["trace_id"], []).append(
                    Pending(row["seq"], row["part_id"], bodies[row["seq"]])
                )
        return Claim(claimed, complete=len(heads) < max_rows and len(chosen) == len(heads))

    async def settle(
        self,
        stored: list[tuple[str, list[int]]],
        refused: list[tuple[str, list[tuple[int, str]]]],
    ) -> None:
        """What the server answered, for every trace of a send pass, in one transaction:
        the versions it stored leave the queue (a newer one stays); those it refused for
        good stay, marked, and are not sent again until they change."""
        if not stored and not refused:
            return
        now = int(time.time() * 1000)
        async with self._store.atomic() as tx:
            await tx.execute_many(
                "DELETE FROM tracesd_message_outbox WHERE seq = ?",
                ((seq,) for _, seqs in stored for seq in seqs),
            )
            await tx.execute_many(
                "UPDATE tracesd_message_follow SET sent_total = sent_total + ?, sent_at = ?"
                " WHERE trace_id = ?",
                ((len(seqs), now, trace_id) for trace_id, seqs in stored),
            )
            await tx.execute_many(
                "UPDATE tracesd_message_outbox SET refused = ? WHERE seq = ?",
                ((reason, seq) for _, rows in refused for seq, reason in rows),
            )
            await tx.execute_many(
                "UPDATE tracesd_message_follow SET refused_total = refused_total + ?"
                " WHERE trace_id = ?",
                ((len(rows), trace_id) for trace_id, rows in refused),
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
