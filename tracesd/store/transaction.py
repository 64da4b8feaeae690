"""The write side of one store transaction: the SQL that changes traces and file states.

A repository URL is stored in canonical form (git/remote_url.py) whoever writes it, so comparing
repositories is comparing strings.

Only valid inside `Store.atomic()`, which owns the transaction; see database.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiosqlite

from tracesd.git.remote_url import canonical_or_none
from tracesd.models import TRACE_COLUMNS, FileState, Trace, now_ms

#: fields an upsert merges with COALESCE(new, old); the others are set as given
_MERGED = tuple(c for c in TRACE_COLUMNS if c not in ("id", "agent_id", "created_at", "updated_at"))
_UPDATABLE = frozenset(TRACE_COLUMNS) - {"id"}


class Transaction:
    """The write side of one open transaction; only valid inside `Store.atomic()`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._db.executemany(sql, rows)

    async def upsert(self, trace: Trace) -> None:
        """Insert, or merge into the stored row: NULL fields keep the stored value."""
        await self.upsert_many([trace])

    async def upsert_many(self, traces: Iterable[Trace]) -> set[str]:
        """Upsert each; the ids that were not stored before (the rest were merged)."""
        stamp = now_ms()
        rows = []
        ids = []
        for trace in traces:
            values = trace.as_dict()
            values["updated_at"] = values["updated_at"] or stamp
            values["created_at"] = values["created_at"] or stamp
            values["git_remote_url"] = canonical_or_none(values["git_remote_url"])
            rows.append([values[c] for c in TRACE_COLUMNS])
            ids.append(trace.id)
        # Asked inside the write transaction, so the answer holds against every other
        # writer: two files (or two programs) that both saw a trace as new count it once.
        existing = await self._existing(ids)
        await self._db.executemany(_UPSERT, rows)
        return set(ids) - existing

    async def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            sql = f"SELECT id FROM traces WHERE id IN ({', '.join('?' * len(chunk))})"
            found.update(row[0] for row in await self._db.execute_fetchall(sql, chunk))
        return found

    async def update(self, trace_id: str, **fields: Any) -> bool:
        """Set exactly the given fields (None clears); True when the row exists."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable trace fields: {', '.join(sorted(unknown))}")
        fields.setdefault("updated_at", now_ms())
        if "git_remote_url" in fields:
            fields["git_remote_url"] = canonical_or_none(fields["git_remote_url"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE traces SET {assignments} WHERE id = ?"
        cursor = await self._db.execute(sql, [*fields.values(), trace_id])
        return cursor.rowcount > 0

    async def set_file(
        self,
        path: str,
        *,
        agent_id: str,
        size: int,
        mtime_ns: int,
        trace_ids: Iterable[str] = (),
        error: str | None = None,
    ) -> None:
        await self.set_files([FileState(path, agent_id, size, mtime_ns, tuple(trace_ids), error)])

    async def set_files(self, files: Iterable[FileState]) -> None:
        stamp = now_ms()
        await self._db.executemany(
            "INSERT OR REPLACE INTO tracesd_files"
            " (path, agent_id, size, mtime_ns, trace_ids, error, seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f.path,
                    f.agent_id,
                    f.size,
                    f.mtime_ns,
                    json.dumps(f.trace_ids),
                    f.error,
                    stamp if f.seen_at is None else f.seen_at,
                )
                for f in files
            ],
        )


_UPSERT = (
    f"INSERT INTO traces ({', '.join(TRACE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in TRACE_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, "
    + ", ".join(f"{c} = COALESCE(excluded.{c}, traces.{c})" for c in _MERGED)
    + ", created_at = COALESCE(traces.created_at, excluded.created_at),"
    " updated_at = excluded.updated_at"
)
