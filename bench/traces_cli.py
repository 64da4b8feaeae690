"""traces_cli: the Traces CLI re-indexes 10,000 traces tracesd captured -> a running tracesd
fills their git columns again (INTERFACE 5b).

A real `tracesd run` (its own database outside ~/.traces, holding 10,000 traces with git
context) beside the CLI's file at its default path, laid out as the CLI 0.6.31 lays it out
(WAL, schema 16, its `traces` table), with the same 10,000 ids. The re-index is what
`traces list` does to rows it prunes and finds again: in one transaction, every row is
deleted and inserted anew with NULL git columns. Measured from that commit until the daemon
logged the last `traces_cli.enriched` (its watch, its debounce and its passes included);
the write lock's longest hold is the longest of the passes' `max_hold_ms` (one
BEGIN IMMEDIATE ... COMMIT each).

Floor, same run, same file: one plain UPDATE that sets the three git columns of all 10,000
rows to constants, in one transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import datetime
from pathlib import Path

from bench import clidb, harness
from bench.harness import Daemon, Options, Workspace
from bench.report import Result, Row, at_most, fmt
from tracesd.models import Trace
from tracesd.store.database import Store

ROWS = 10_000
TOTAL_TARGET_MS = 1000.0
HOLD_TARGET_MS = 50.0


def run(options: Options) -> Result:
    result = Result("traces_cli")
    with Workspace("traces_cli") as ws:
        ids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(ROWS)]
        own = ws.root / "own" / "traces.db"
        config = ws.home / ".config" / "tracesd" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'[storage]\ndb_path = "{own}"\n')
        harness.say(f"traces_cli: {ROWS} traces in tracesd's database and the CLI's")
        asyncio.run(_own_db(own, ids))
        cli = ws.home / ".local" / "share" / "traces" / "traces.db"
        clidb.create(cli, ids)
        floor_ms = _floor(cli)
        with Daemon(ws.env, ws.root / "daemon.log") as daemon:
            daemon.wait_for("scan.finished", lambda e: e.get("reason") == "startup")
            time.sleep(1.0)  # the start pass finds nothing to do (the floor filled them)
            harness.say("traces_cli: re-index")
            committed_at = _reindex(cli, ids)
            total = 0

            def all_filled(event: harness.Event) -> bool:  # each event is seen once
                nonlocal total
                total += int(event["rows"])
                return total >= ROWS

            daemon.wait_for("traces_cli.enriched", all_filled, timeout_s=60.0)
            events = daemon.events("traces_cli.enriched")
        last = max(datetime.fromisoformat(e["timestamp"]).timestamp() for e in events)
        total_ms = (last - committed_at) * 1000
        hold_ms = max(e["max_hold_ms"] for e in events)
        right = _filled_rows(cli)
        ws.keep = right != ROWS
        floor = f"plain UPDATE of {ROWS:,} rows {fmt(floor_ms, 'ms')}"
        result.rows += [
            at_most(
                f"{ROWS:,} rows filled after a re-index",
                total_ms,
                TOTAL_TARGET_MS,
                "ms",
                floor=floor,
            ),
            at_most(
                "write lock held per statement, max",
                hold_ms,
                HOLD_TARGET_MS,
                "ms",
                floor=floor,
                digits=2,
            ),
            Row("passes, statements", f"{len(events)}, {sum(e['statements'] for e in events)}"),
            Row(
                "rows with our git context",
                f"{right:,}/{ROWS:,}",
                f"{ROWS:,}/{ROWS:,}",
                passed=right == ROWS,
            ),
        ]
        result.raw.update(
            total_ms=total_ms,
            max_hold_ms=hold_ms,
            floor_ms=floor_ms,
            events=events,
            rows_right=right,
        )
    return result


async def _own_db(path: Path, ids: list[str]) -> None:
    store = await Store.open(path)
    try:
        traces = [
            Trace(
                id=trace_id,
                agent_id="claude-code",
                directory=f"/src/repo{i % 100}",
                git_remote_url=f"https://github.com/bench/repo{i % 100}",
                git_branch=f"feature/bench-{i % 7}",
                git_ref=f"{i:040x}",
            )
            for i, trace_id in enumerate(ids)
        ]
        async with store.atomic() as tx:
            await tx.upsert_many(traces)
    finally:
        await store.close()


def _floor(path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")  # as the CLI, and as tracesd's bridge
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE traces SET git_remote_url = 'u', git_branch = 'b', git_ref = 'r'")
        conn.execute("COMMIT")
        return (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def _reindex(path: Path, ids: list[str]) -> float:
    """Every row deleted and inserted anew with NULL git, in one transaction; when it
    committed (wall clock)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM traces")
        clidb.insert(conn, ids)
        conn.execute("COMMIT")
        return time.time()
    finally:
        conn.close()


def _filled_rows(path: Path) -> int:
    conn = harness.read_only(path)
    try:
        sql = (
            "SELECT COUNT(*) FROM traces WHERE git_branch LIKE 'feature/bench-%' AND git_ref <> 'r'"
        )
        count: int = conn.execute(sql).fetchone()[0]
        return count
    finally:
        conn.close()
