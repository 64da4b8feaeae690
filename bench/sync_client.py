"""`python -m bench.sync_client --db PATH --url URL --mode batch|put`: drain a client
database's outbox into a Traces API the way the daemon does, and print one JSON line.

The sync is tracesd's own: Store, Outbox, BackendClient and SyncService with the default
SyncConfig but for `api_url` and, as for a team server, `scope = "all"` (batch_size 100,
...). `--mode put` starts SyncService on the per-trace PUT path (`use_batch=False`, 8
concurrent PUTs). `sync_once(force=True)` is called until nothing is pending, or until a
run stores nothing (the server refuses or is down; the line then shows what is left).

The line says what was sent and how long the sync took (`sync_s`: the `sync_once` calls
only, not interpreter start or opening the store), and how much of that went to the
outbox's SQLite work (`outbox_s`, per method; the rest is building payloads and HTTP).
Log events (`sync.batch` per batch) go to stderr as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.apiserver import TEAM_SYNC
from tracesd import logs
from tracesd.config import SyncConfig
from tracesd.store.database import Store
from tracesd.store.outbox import Counts, Outbox, Pending
from tracesd.sync.client import BackendClient, aclose, open_session
from tracesd.sync.job import SyncService

T = TypeVar("T")


class TimedOutbox(Outbox):
    """The outbox, with the seconds spent in each of its methods added up."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.seconds: defaultdict[str, float] = defaultdict(float)

    async def _timed(self, name: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await work
        finally:
            self.seconds[name] += time.perf_counter() - started

    async def claim(self, limit: int, *, skip: Collection[str] = ()) -> list[Pending]:
        return await self._timed("claim", super().claim(limit, skip=skip))

    async def ack(self, sent: Iterable[tuple[str, int]]) -> None:
        await self._timed("ack", super().ack(sent))

    async def reject(self, refused: Iterable[tuple[str, int, str]]) -> None:
        await self._timed("reject", super().reject(refused))

    async def counts(self) -> Counts:
        return await self._timed("counts", super().counts())

    async def save_state(self, **values: Any) -> None:
        await self._timed("save_state", super().save_state(**values))


async def drain(db: Path, url: str, mode: str) -> dict[str, Any]:
    opened = time.perf_counter()
    store = await Store.open(db)
    try:
        outbox = TimedOutbox(store)
        before = await outbox.counts()
        outbox.seconds.clear()
        open_s = time.perf_counter() - opened
        session = open_session()
        try:
            client = BackendClient(session, url, None)
            service = SyncService(
                outbox, client, SyncConfig(api_url=url, **TEAM_SYNC), use_batch=mode == "batch"
            )
            totals, sync_s = await _until_done(service)
            requests = service.requests
        finally:
            await aclose(session)
    finally:
        await store.close()
    return {
        "mode": mode,
        "pending_before": before.pending,
        **totals,
        #: _send calls: batches (for put: groups of one PUT per trace)
        "send_calls": requests,
        "open_s": round(open_s, 4),
        "sync_s": round(sync_s, 4),
        "outbox_s": {name: round(s, 4) for name, s in sorted(outbox.seconds.items())},
    }


async def _until_done(service: SyncService) -> tuple[dict[str, int], float]:
    """sync_once(force=True) until nothing is pending or a run stores nothing; (totals, s)."""
    totals = {"runs": 0, "sent": 0, "succeeded": 0, "failed": 0, "pending_after": 0}
    started = time.perf_counter()
    while True:
        report = await service.sync_once(force=True)
        totals["runs"] += 1
        totals["sent"] += report.sent
        totals["succeeded"] += report.succeeded
        totals["failed"] += report.failed
        totals["pending_after"] = report.pending
        if report.pending == 0 or report.succeeded == 0:
            return totals, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_client", description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="client database (tracesd's)")
    parser.add_argument("--url", required=True, help="the Traces API, e.g. http://127.0.0.1:8787")
    parser.add_argument("--mode", choices=("batch", "put"), default="batch")
    args = parser.parse_args(argv)
    logs.configure("info", "json")  # stderr; stdout carries the one result line
    result = asyncio.run(drain(args.db, args.url, args.mode))
    print(json.dumps(result), flush=True)
    return 0 if result["pending_after"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
