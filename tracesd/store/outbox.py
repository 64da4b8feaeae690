"""The outbox: which traces the Traces API has not seen in their latest version.

Rows of `tracesd_outbox` are kept by triggers (migrations.py): every change to a synced
field (sync/wire.py's SYNCED_FIELDS) bumps the trace's `version` in the same transaction
that writes it. A sync claims pending traces, sends them, and acknowledges the version it
*sent*; an update that lands while a batch is in flight bumps the version again, so the
trace stays pending and is sent next time. A version the server refused for good is
remembered as failed, with the reason, until the trace changes again; it never blocks
other traces.

The scope (`[sync] scope`) decides which pending traces are claimed and counted: "shared",
only those the Traces CLI shared (`shared_url` set, copied from its database by the bridge);
"all", every one. A trace out of scope stays in the outbox, pending, and is claimed the
moment it comes into scope (it is never counted as pending meanwhile: it is not waiting).

Sync's own durable state (backoff, last success, last error) is kept here too, so a restart
(or kill -9) resumes where the daemon left off.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from typing import Any

from tracesd.models import TRACE_COLUMNS, Trace
from tracesd.store.database import Store

#: a pending outbox row: the rule of the claim and the pending count, and of the partial
#: index that serves them (migrations.py holds the copy it made the index with; SQLite
#: uses the index only while they are the same, which tests/test_migrations.py checks)
PENDING_SQL = "version > sent_version AND (failed_version IS NULL OR failed_version < version)"
_FAILED = "o.failed_version >= o.version"
#: what a scope adds to a query of the outbox `o` (its trace's row is `t`)
_IN_SCOPE = {"all": "", "shared": " AND t.shared_url IS NOT NULL"}


#: the outbox rows joined to their traces: for "shared", the few shared traces drive the
#: loop (CROSS JOIN keeps SQLite to that order; the partial index tracesd_traces_shared
#: finds them), instead of every pending trace looking up its row
_JOINED = {
    "all": "tracesd_outbox o JOIN traces t ON t.id = o.trace_id",
    "shared": "traces t CROSS JOIN tracesd_outbox o ON o.trace_id = t.id",
}


def _from(scope: str) -> str:
    """The outbox rows in `scope`, joined to their trace when the scope needs it."""
    return _JOINED[scope] if _IN_SCOPE[scope] else "tracesd_outbox o"


def _counts_sql(scope: str) -> str:
    rows, where = _from(scope), _IN_SCOPE[scope]
    return (
        f"(SELECT COUNT(*) FROM {rows} WHERE {PENDING_SQL}{where}),"
        f" (SELECT COUNT(*) FROM {rows} WHERE {_FAILED}{where}),"
        " (SELECT COUNT(*) FROM tracesd_outbox o WHERE o.sent_version > 0)"
    )


def _failures_sql(scope: str) -> str:
    return (
        f"SELECT o.trace_id, o.error, o.changed_at FROM {_from(scope)}"
        f" WHERE {_FAILED}{_IN_SCOPE[scope]} ORDER BY o.changed_at DESC LIMIT ?"
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """A trace to send, and the version of it that is being sent."""

    trace: Trace
    version: int


@dataclass(frozen=True, slots=True)
class Counts:
    pending: int
    failed: int
    synced: int


@dataclass(frozen=True, slots=True)
class Overview:
    """Traces per agent and the outbox's counts and failures, read together."""

    by_agent: dict[str, int]
    counts: Counts
    failures: list[tuple[str, str]]


class Outbox:
    def __init__(self, store: Store, *, scope: str = "all") -> None:
        if scope not in _IN_SCOPE:
            raise ValueError(f"unknown sync scope {scope!r}")
        self._store = store
        self.scope = scope
        self._counts = _counts_sql(scope)
        self._failures = _failures_sql(scope)

    async def claim(self, limit: int, *, skip: Collection[str] = ()) -> list[Pending]:
        """Up to `limit` pending traces in scope, oldest change first, except those in
        `skip` (in flight: their answer has not been recorded yet)."""
        columns = ", ".join(f"t.{c}" for c in TRACE_COLUMNS)
        not_in = f" AND o.trace_id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        rows = await self._store.query(
            f"SELECT {columns}, o.version AS outbox_version FROM {_JOINED[self.scope]}"
            f" WHERE {PENDING_SQL}{_IN_SCOPE[self.scope]}{not_in}"
            " ORDER BY o.changed_at, o.trace_id LIMIT ?",
            (*skip, limit),
        )
        return [
            Pending(Trace(**{c: row[c] for c in TRACE_COLUMNS}), row["outbox_version"])
            for row in rows
        ]

    async def resend(self, trace_id: str) -> None:
        """The server lost the trace (it answered 404 about it): pending again, as new."""
        await self._store.execute_many(
            "UPDATE tracesd_outbox SET sent_version = 0, failed_version = NULL, error = NULL"
            " WHERE trace_id = ?",
            [(trace_id,)],
        )

    async def ack(self, sent: Iterable[tuple[str, int]]) -> None:
        """The server stored these versions: a newer local version stays pending."""
        rows = [(version, version, trace_id) for trace_id, version in sent]
        if rows:
            await self._store.execute_many(
                "UPDATE tracesd_outbox SET sent_version = MAX(sent_version, ?),"
                " failed_version = CASE WHEN failed_version <= ? THEN NULL ELSE failed_version END,"
                " error = CASE WHEN failed_version IS NULL THEN NULL ELSE error END"
                " WHERE trace_id = ?",
                rows,
            )

    async def reject(self, refused: Iterable[tuple[str, int, str]]) -> None:
        """The server refused these versions for good: failed until the trace changes."""
        rows = [(version, reason, trace_id) for trace_id, version, reason in refused]
        if rows:
            await self._store.execute_many(
                "UPDATE tracesd_outbox SET failed_version = MAX(COALESCE(failed_version, 0), ?),"
                " error = ? WHERE trace_id = ?",
                rows,
            )

    async def counts(self) -> Counts:
        """Three cheap counts (the pending one from its partial index), in scope (the
        synced count is every trace the server ever acknowledged)."""
        rows = await self._store.query(f"SELECT {self._counts}")
        return _counts(rows[0])

    async def failures(self, limit: int = 20) -> list[tuple[str, str]]:
        """Traces that are failed until they change, with the server's reason."""
        rows = await self._store.query(self._failures, (limit,))
        return [(row[0], row[1] or "") for row in rows]

    async def overview(self, limit: int = 20) -> Overview:
        """What `tracesd status` reads from the database, in one statement: a single trip
        to the reader's thread, so status stays fast while a scan keeps threads busy."""
        rows = await self._store.query(
            f"SELECT {self._counts},"
            " (SELECT json_group_object(agent_id, n) FROM"
            "  (SELECT agent_id, COUNT(*) AS n FROM traces GROUP BY agent_id ORDER BY agent_id)),"
            # an aggregate keeps no order: changed_at comes along to sort by
            " (SELECT json_group_array(json_array(trace_id, error, changed_at))"
            f"  FROM ({self._failures}))",
            (limit,),
        )
        row = rows[0]
        return Overview(
            by_agent=json.loads(row[3] or "{}"),
            counts=_counts(row),
            failures=[
                (trace_id, error or "")
                for trace_id, error, _ in sorted(
                    json.loads(row[4] or "[]"), key=lambda f: f[2], reverse=True
                )
            ],
        )

    async def state(self) -> dict[str, Any]:
        rows = await self._store.query("SELECT key, value FROM tracesd_sync_state")
        return {row[0]: json.loads(row[1]) for row in rows}

    async def save_state(self, **values: Any) -> None:
        await self._store.execute_many(
            "INSERT INTO tracesd_sync_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, json.dumps(value)) for key, value in values.items()],
        )


@dataclass(slots=True)
class SyncState:
    """Sync's durable state (backoff, last success, last error), saved with save_state();
    survives restarts."""

    consecutive_failures: int = 0
    next_attempt_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    auth_paused: bool = False

    @classmethod
    def load(cls, values: dict[str, Any]) -> SyncState:
        """The saved state; a value of the wrong type or not finite (a NaN deadline saved by
        a version that accepted `max_backoff_s = nan`) is read as its default."""

        def moment(name: str) -> float | None:
            value = values.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value) if math.isfinite(value) else None

        failures, error = values.get("consecutive_failures"), values.get("last_error")
        return cls(
            consecutive_failures=failures if type(failures) is int and failures >= 0 else 0,
            next_attempt_at=moment("next_attempt_at"),
            last_success_at=moment("last_success_at"),
            last_error=error if isinstance(error, str) else None,
            auth_paused=values.get("auth_paused") is True,
        )

    def dump(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _counts(row: Any) -> Counts:
    pending, failed, synced = (int(v or 0) for v in tuple(row)[:3])
    return Counts(pending, failed, synced)
