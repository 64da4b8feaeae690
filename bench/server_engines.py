"""server_engines: the team server on SQLite and on PostgreSQL, side by side in one run.

Both engines get the same corpus (bench.server_corpus): 1,000,000 traces (--quick:
100,000) in 1,000 repositories of one namespace, stored through the storage interface
(`open_storage(...).upsert_many` in batches of 5,000, in order; not over HTTP; timed), one
bench.server_populate process per engine, both at once. SQLite is a file in the workspace,
PostgreSQL is pgserver's PostgreSQL 16 in the workspace (bench.postgres), stopped at the
end. Then, per engine, a real `tracesd server --db <file or postgresql://...>` subprocess
with a token, and the load from another process (bench.server_load; it takes its own CPU,
not the server's):

1. Latency: the first page of `GET /v1/traces?gitRemoteUrl=` (100 of a repository's 1,000)
   for random repositories in mixed URL forms (https, .git, scp-like, ssh://), every page
   checked; target p99 <= 10 ms. Floor, same run, interleaved: `GET /v1/session` and a
   `GET /v1/traces/<unknown>` 404 (HTTP, auth and routing, no listing).
2. Write load: 16 clients, one connection each, sending `POST /v1/traces/batch` of 100 new
   traces in a loop; traces acknowledged per second over a fixed window after a warm-up.
3. PostgreSQL only: the same load split over two server processes on the one database
   (clients alternate between them), against the one-server rate above. Where the CPU goes
   during each window: the servers' and the client's from /proc/<pid>/stat, PostgreSQL's
   (postmaster and every backend) likewise, the machine's from /proc/stat ("other" is
   whatever else ran: the machine is shared). From the one-server window's CPU per trace
   the ratio this machine allows is worked out: one server process runs on one core at
   most, two on two; server, PostgreSQL and client all share the machine's cores. As the
   rest of the machine's load differs between windows, the ratio is also given per core
   the run itself used (traces/s over the cores of servers, PostgreSQL and client).
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import harness, measure, server_corpus, server_populate
from bench.apiserver import ApiServer
from bench.harness import Options, Workspace
from bench.measure import BenchError, Child
from bench.postgres import Postgres
from bench.report import Result, Row, distribution, fmt
from tracesd.server.auth import user_for

TRACES = 1_000_000
QUICK_TRACES = 100_000
LATENCY_ROUNDS = 1000
QUICK_LATENCY_ROUNDS = 300
P99_TARGET_MS = 10.0
CLIENTS = 16
BATCH = 100
WARMUP_S = 2.0
WINDOW_S = 20.0
QUICK_WINDOW_S = 8.0
ENGINES = ("sqlite", "postgresql")
CORES = 2


@dataclass(slots=True)
class Load:
    """One write-load window: what the client saw, and the CPU each part used in it."""

    report: dict[str, Any]
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return float(self.report["traces"]) / float(self.report["wall_s"])

    def share(self, part: str) -> float:
        """Cores `part` kept busy on average during the window."""
        return self.cpu_s[part] / float(self.report["wall_s"])

    @property
    def ours(self) -> float:
        """Cores the run itself kept busy: servers, PostgreSQL and the client."""
        return sum(self.share(part) for part in ("servers", "postgres", "client"))

    def per_trace_ms(self, part: str) -> float:
        return self.cpu_s[part] * 1000 / max(1, int(self.report["traces"]))


def run(options: Options) -> Result:
    result = Result("server_engines")
    traces = QUICK_TRACES if options.quick else TRACES
    rounds = QUICK_LATENCY_ROUNDS if options.quick else LATENCY_ROUNDS
    window_s = QUICK_WINDOW_S if options.quick else WINDOW_S
    token = f"bench-{secrets.token_hex(16)}"
    with Workspace("server_engines") as ws, Postgres(ws.root / "postgres") as pg:
        targets = {"sqlite": str(ws.root / "server.db"), "postgresql": pg.create_database("bench")}
        populated = _populate(ws, targets, traces, user_for(token).namespace_id)
        latency: dict[str, dict[str, Any]] = {}
        loads: dict[str, Load] = {}
        for engine, target in targets.items():
            with ApiServer(ws.env, target, ws.root / f"{engine}.log", token=token) as server:
                harness.say(f"server_engines: {engine}: {rounds} rounds of GETs")
                latency[engine] = _latency(ws, server.url, token, traces, rounds, options.seed)
                harness.say(f"server_engines: {engine}: {CLIENTS} clients, {window_s:g}s")
                loads[f"{engine}-1"] = _load(ws, [server], pg, token, window_s, f"{engine}-1")
        logs = [ws.root / f"postgresql-{n}.log" for n in (1, 2)]
        with (
            ApiServer(ws.env, targets["postgresql"], logs[0], token=token) as one,
            ApiServer(ws.env, targets["postgresql"], logs[1], token=token) as two,
        ):
            harness.say(f"server_engines: postgresql, two servers: {CLIENTS} clients")
            loads["postgresql-2"] = _load(ws, [one, two], pg, token, window_s, "postgresql-2")
        _rows(result, traces, populated, latency, loads)
        ws.keep = not result.ok
        result.raw.update(
            traces=traces,
            populated=populated,
            latency_ms={
                e: {k: distribution(v) for k, v in d["ms"].items()} for e, d in latency.items()
            },
            latency_wrong={e: d["wrong_examples"] for e, d in latency.items()},
            loads={
                name: {
                    **{k: v for k, v in load.report.items() if k != "batch_ms"},
                    "batch_ms": distribution(load.report["batch_ms"] or [0.0]),
                    "rate": load.rate,
                    "cpu_s": load.cpu_s,
                }
                for name, load in loads.items()
            },
        )
    return result


def _populate(
    ws: Workspace, targets: dict[str, str], traces: int, namespace: str
) -> dict[str, dict[str, float]]:
    """Store the corpus in each engine at once, a bench.server_populate process each: the
    seconds spent in upsert_many (`upsert_s`), the process's wall and CPU time."""
    harness.say(f"server_engines: storing {traces:,} traces in {', '.join(targets)}")
    children: dict[str, Child] = {}

    def fill(engine: str) -> None:
        argv = [sys.executable, "-m", "bench.server_populate", "--db", targets[engine]]
        argv += ["--traces", str(traces), "--namespace", namespace]
        stderr = ws.root / f"populate-{engine}.log"
        children[engine] = measure.run_child(argv, ws.env, stderr=stderr, timeout_s=900.0)
        if children[engine].returncode != 0:
            raise BenchError(f"storing the corpus in {engine} failed: {stderr}")

    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        for done in [pool.submit(fill, engine) for engine in targets]:
            done.result()
    filled = {}
    for engine, child in children.items():
        harness.say(f"server_engines: {engine}: stored in {child.wall_s:.1f}s")
        report = json.loads(child.stdout.strip().splitlines()[-1])  # logs may come before
        filled[engine] = {
            "upsert_s": report["upsert_s"],
            "wall_s": child.wall_s,
            "cpu_s": child.cpu_s,
        }
    return filled


def _latency(
    ws: Workspace, url: str, token: str, traces: int, rounds: int, seed: int
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.server_load", "latency", "--url", url]
    argv += ["--token", token, "--traces", str(traces), "--requests", str(rounds)]
    argv += ["--seed", str(seed)]
    child = measure.run_child(argv, ws.env, stderr=ws.root / "latency.log")
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise BenchError(f"latency client exited {child.returncode}: {ws.root / 'latency.log'}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _load(
    ws: Workspace,
    servers: Sequence[ApiServer],
    pg: Postgres,
    token: str,
    window_s: float,
    name: str,
) -> Load:
    """Run the write load; CPU of each part between the window's two marks."""
    argv = [sys.executable, "-m", "bench.server_load", "batch", "--token", token]
    for server in servers:
        argv += ["--url", server.url]
    argv += ["--clients", str(CLIENTS), "--size", str(BATCH)]
    argv += ["--warmup", str(WARMUP_S), "--window", str(window_s)]
    stderr = ws.root / f"load-{name}.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            argv, env=ws.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    marks: dict[str, dict[str, float]] = {}
    report: dict[str, Any] | None = None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] in ("window.started", "window.ended"):
                marks[event["event"]] = _cpu(servers, pg, proc.pid)
            elif event["event"] == "result":
                report = event
        proc.wait(60.0)
    finally:
        measure.stop_process(proc)
        proc.stdout.close()
    if report is None or len(marks) != 2:
        raise BenchError(f"write load {name} exited {proc.returncode}: {stderr}")
    start, end = marks["window.started"], marks["window.ended"]
    cpu = {part: end[part] - start[part] for part in start}
    cpu["other"] = cpu["machine"] - cpu["servers"] - cpu["postgres"] - cpu["client"]
    return Load(report, cpu)


def _cpu(servers: Sequence[ApiServer], pg: Postgres, client: int) -> dict[str, float]:
    return {
        "servers": sum(measure.cpu_seconds(s.pid) for s in servers),
        "postgres": pg.cpu_seconds(),
        "client": measure.cpu_seconds(client),
        "machine": measure.machine_busy_s(),
    }


# ---------------------------------------------------------------------------- report


def _rows(
    result: Result,
    traces: int,
    populated: dict[str, dict[str, float]],
    latency: dict[str, dict[str, Any]],
    loads: dict[str, Load],
) -> None:
    per_repo = traces // server_corpus.REPOS
    result.rows.append(
        Row(
            "corpus",
            f"{traces:,} traces in {server_corpus.REPOS:,} repositories ({per_repo:,} each), "
            "one namespace",
        )
    )
    for engine in ENGINES:
        spent = populated[engine]["upsert_s"]
        result.rows.append(
            Row(
                f"{engine}: storing the corpus (both engines at once)",
                f"{fmt(spent, 's')} in upsert_many ({fmt(traces / spent, 'traces/s', 0)}; "
                f"batches of {server_populate.BATCH:,}), process wall "
                f"{fmt(populated[engine]['wall_s'], 's')}",
            )
        )
    for engine in ENGINES:
        ms = latency[engine]["ms"]
        page, session, unknown = (distribution(ms[k]) for k in ("list", "session", "unknown"))
        floor = (
            f"GET /v1/session p50 {session['p50']:.2f}, p99 {session['p99']:.2f} ms; "
            f"unknown trace (404) p50 {unknown['p50']:.2f}, p99 {unknown['p99']:.2f} ms"
        )
        wrong, checked = int(latency[engine]["wrong"]), int(latency[engine]["checked"])
        result.rows += [
            Row(
                f"{engine}: first page of GET /v1/traces?gitRemoteUrl= "
                f"({server_corpus.PAGE} of {per_repo:,})",
                f"p99 {page['p99']:.2f} ms, p50 {page['p50']:.2f} ms",
                f"p99 <= {fmt(P99_TARGET_MS, 'ms')}",
                floor,
                page["p99"] <= P99_TARGET_MS,
            ),
            Row(
                f"{engine}: answers right (pages checked against the corpus)",
                f"{checked - wrong:,}/{checked:,}",
                "all",
                passed=wrong == 0,
            ),
        ]
    labels = {
        "sqlite-1": "sqlite, 1 server",
        "postgresql-1": "postgresql, 1 server",
        "postgresql-2": "postgresql, 2 servers",
    }
    for name, label in labels.items():
        load = loads[name]
        batch_ms = distribution(load.report["batch_ms"] or [0.0])
        cores = ", ".join(
            f"{part} {load.share(part):.2f}" for part in ("servers", "postgres", "client")
        )
        cores += (
            f" ({load.ours:.2f}: {fmt(load.rate / load.ours, 'traces/s', 0)} per core); "
            f"the rest of the machine {load.share('other'):.2f}"
        )
        sampled, missing = int(load.report["sampled"]), int(load.report["missing"])
        failed = int(load.report["failed_batches"])
        result.rows += [
            Row(
                f"{label}: {CLIENTS} clients x batches of {BATCH}",
                f"{fmt(load.rate, 'traces/s', 0)} (POST p50 {batch_ms['p50']:.0f} ms, "
                f"p99 {batch_ms['p99']:.0f} ms; {float(load.report['wall_s']):.0f} s window)",
            ),
            Row(f"{label}: cores busy in the window (of {CORES})", cores),
            Row(
                f"{label}: batches failed; acknowledged traces read back",
                f"{failed}; {sampled - missing}/{sampled}",
                f"0; {sampled}/{sampled}",
                passed=failed == 0 and missing == 0,
            ),
        ]
    one, two = loads["postgresql-1"], loads["postgresql-2"]
    allowed, why = _allowed_ratio(one)
    per_core = (two.rate / two.ours) / (one.rate / one.ours)
    result.rows.append(
        Row(
            "postgresql: 2 servers vs 1",
            f"{two.rate / one.rate:.2f}x ({per_core:.2f}x per core used; the rest of the "
            f"machine took {one.share('other'):.2f} and {two.share('other'):.2f} cores)",
            floor=f"this machine allows {allowed:.2f}x: {why}",
        )
    )
    result.raw.update(allowed_ratio=allowed, ratio=two.rate / one.rate, ratio_per_core=per_core)


def _allowed_ratio(one: Load) -> tuple[float, str]:
    """What two server processes could gain over one on this machine with nothing else
    running, from the CPU per trace of the one-server window: a server process runs on one
    core at most; servers, PostgreSQL and the client share the machine's CORES."""
    server, postgres, client = (one.per_trace_ms(p) for p in ("servers", "postgres", "client"))
    machine = CORES * 1000 / (server + postgres + client)
    single = min(1000 / server, machine)
    double = min(2 * 1000 / server, machine)
    why = (
        f"CPU per trace: server {server:.3f} ms, PostgreSQL {postgres:.3f} ms, client "
        f"{client:.3f} ms; one server process tops out at {1000 / server:,.0f} traces/s "
        f"(its one core), the {CORES} cores at {machine:,.0f} traces/s for all three"
    )
    return double / single, why
