"""sync: pending traces -> `tracesd server` on loopback, in bulk and as they are captured.

Throughput. A client database holds 10,000 realistic pending traces (bench.pending: written
with tracesd's Store, so the outbox triggers mark them pending; titles, previews,
directories, remote, branch and commit set). A fresh copy of it is synced twice, each time
by `python -m bench.sync_client` (tracesd's Store, Outbox, BackendClient and SyncService;
default SyncConfig but for api_url, so batch_size 100) into a fresh, empty
`tracesd server --no-auth --port 0`: once on the batch path (POST /v1/traces/batch), once
on the per-trace PUT path (`use_batch=False`, 8 PUTs in flight), so both insert 10,000 new
rows. A rate is 10,000 over the sync's own duration, measured inside the client around
`sync_once(force=True)` (interpreter start and opening the store excluded; the wall time
including them is shown too). Wall, CPU and peak RSS (VmHWM) of the client come from
run_child, the server's CPU from /proc. Afterwards each server database must hold every
trace with the directory and git fields sent.

Targets, compared within the same run: batch >= 5,000 traces/s, and batch >= 5x the PUT
path's rate (same client, same server, same data; the PUT path is the comparison).

Latency: bench.sync_latency (capture -> visible on the server, with default settings).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import harness, measure, pending, sync_latency
from bench.apiserver import ApiServer, server_rows
from bench.harness import GitRow, Options, Workspace
from bench.measure import BenchError, Child
from bench.report import Result, Row, at_least, fmt
from tracesd.models import Trace
from tracesd.sync.delivery import PUT_CONCURRENCY
from tracesd.sync.wire import payload

TRACES = 10_000
REPOS = 100
RATE_TARGET = 5_000.0
RATIO_TARGET = 5.0
MODES = ("batch", "put")


@dataclass(frozen=True, slots=True)
class Drain:
    """One sync of the whole client database into a fresh server."""

    mode: str
    child: Child
    #: the client's JSON line (bench.sync_client)
    report: dict[str, Any]
    server_cpu_s: float
    #: traces on the server afterwards, and those whose row differs from what was sent
    server_rows: int
    wrong: list[str]

    @property
    def sync_s(self) -> float:
        return float(self.report["sync_s"])

    @property
    def rate(self) -> float:
        return TRACES / self.sync_s

    @property
    def outbox_s(self) -> float:
        return float(sum(self.report["outbox_s"].values()))

    @property
    def counts_ok(self) -> bool:
        r = self.report
        want = (TRACES, TRACES, TRACES, 0, 0)
        return (
            r["pending_before"],
            r["sent"],
            r["succeeded"],
            r["failed"],
            r["pending_after"],
        ) == want

    @property
    def ok(self) -> bool:
        return self.counts_ok and self.server_rows == TRACES and not self.wrong


def run(options: Options) -> Result:
    result = Result("sync")
    with Workspace("sync") as ws:
        made = pending.traces(ws.home, TRACES, REPOS, options.seed)
        template = ws.root / "client-template.db"
        harness.say(f"sync: writing {TRACES:,} pending traces")
        pending.write(template, made)
        payload_bytes = _payload_bytes(made)
        expected = pending.expected_rows(made)
        drains = {mode: _drain(ws, mode, template, expected) for mode in MODES}
        _throughput_rows(result, pending.describe(made), payload_bytes, drains)
        latency_ok = sync_latency.run(ws, options, result)
        ws.keep = not (all(d.ok for d in drains.values()) and latency_ok)
        result.raw.update(
            traces=TRACES,
            payload_bytes_per_trace=payload_bytes,
            drains={
                mode: {
                    "child": {**asdict(d.child), "stdout": None},
                    "report": d.report,
                    "rate": d.rate,
                    "server_cpu_s": d.server_cpu_s,
                    "server_rows": d.server_rows,
                    "wrong_rows": d.wrong[:20],
                }
                for mode, d in drains.items()
            },
        )
    return result


def _drain(ws: Workspace, mode: str, template: Path, expected: dict[str, GitRow]) -> Drain:
    """Sync a fresh copy of the client database into a fresh server; check what arrived."""
    client_db = ws.root / f"client-{mode}.db"
    server_db = ws.root / f"server-{mode}.db"
    pending.copy(template, client_db)
    os.sync()  # no writeback of the copy during the measurement
    harness.say(f"sync: {TRACES:,} traces, {mode} path")
    with ApiServer(ws.env, server_db, ws.root / f"server-{mode}.log") as server:
        cpu_before = measure.cpu_seconds(server.pid)
        argv = [sys.executable, "-m", "bench.sync_client", "--db", str(client_db)]
        argv += ["--url", server.url, "--mode", mode]
        stderr = ws.root / f"client-{mode}.log"
        child = measure.run_child(argv, ws.env, stderr=stderr, timeout_s=300.0)
        server_cpu_s = measure.cpu_seconds(server.pid) - cpu_before
    lines = child.stdout.strip().splitlines()
    if not lines:
        raise BenchError(f"sync client ({mode}) exited {child.returncode} silently: {stderr}")
    report = json.loads(lines[-1])
    rows = server_rows(server_db)
    wrong = [
        f"{trace_id}: {rows.get(trace_id)} != {want}"
        for trace_id, want in expected.items()
        if rows.get(trace_id) != want
    ]
    return Drain(mode, child, report, server_cpu_s, len(rows), wrong)


def _payload_bytes(made: list[Trace]) -> float:
    """Mean size of one trace's item in a batch (tracesd's own payload, titles included)."""
    return sum(len(json.dumps(payload(t, send_titles=True))) for t in made) / len(made)


def _throughput_rows(
    result: Result, corpus: str, payload_bytes: float, drains: dict[str, Drain]
) -> None:
    batch, put = drains["batch"], drains["put"]
    put_floor = f"PUT path {fmt(put.rate, 'traces/s', 0)}, same run"
    result.rows += [
        Row("client database", f"{corpus}, ~{payload_bytes:,.0f} B of JSON per trace"),
        at_least("batch path rate", batch.rate, RATE_TARGET, "traces/s", floor=put_floor, digits=0),
        at_least(
            "batch path vs PUT path",
            batch.rate / put.rate,
            RATIO_TARGET,
            "x",
            floor=put_floor,
            digits=2,
        ),
    ]
    for d in (batch, put):
        label = {"batch": "batch path", "put": "PUT path"}[d.mode]
        sends = d.report["send_calls"]
        requests = (
            f"{sends:,} POSTs of {TRACES // max(sends, 1):,}"
            if d.mode == "batch"
            else f"{d.report['sent']:,} PUTs, {PUT_CONCURRENCY} in flight"
        )
        result.rows += [
            Row(
                f"{label}: {TRACES:,} traces",
                f"{fmt(d.rate, 'traces/s', 0)}: sync {fmt(d.sync_s, 's', 2)} ({requests}; "
                f"outbox SQLite {fmt(d.outbox_s, 's', 2)}), "
                f"client wall {fmt(d.child.wall_s, 's', 2)} incl. start-up",
            ),
            Row(
                f"{label}: client peak RSS, CPU",
                f"peak RSS {fmt(d.child.peak_rss_mb, 'MB')}; CPU: client "
                f"{fmt(d.child.cpu_s, 's', 2)} (incl. start-up), "
                f"server {fmt(d.server_cpu_s, 's', 2)}",
            ),
            Row(
                f"{label}: server rows with their git fields",
                f"{TRACES - len(d.wrong):,}/{TRACES:,} ({d.server_rows:,} rows)",
                f"{TRACES:,}/{TRACES:,}",
                passed=d.server_rows == TRACES and not d.wrong,
            ),
            Row(
                f"{label}: client counts",
                " ".join(
                    f"{k}={d.report[k]}"
                    for k in ("pending_before", "sent", "succeeded", "failed", "pending_after")
                ),
                f"sent=succeeded={TRACES}, failed=0, pending_after=0",
                passed=d.counts_ok,
            ),
        ]
