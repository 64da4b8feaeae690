"""sync latency: a session file is written -> its trace is visible on the server, defaults.

A real `tracesd run` (bench.harness.Daemon) whose config file sets nothing but
`[sync] api_url` (and `scope = "all"`, as for a team server: bench.apiserver.TEAM_SYNC)
-- so sync runs every 30 s, and a capture pulls the next run forward to 0.5 s later
(tracesd.sync.job.NUDGE_DELAY_S) -- syncs to a `tracesd server` with auth on
(TRACESD_SERVER_TOKENS for the server, TRACES_API_KEY for the daemon). 40 Claude Code
sessions are written about 1 s apart in real git repositories; a thread polls the server's
SQLite read-only every 5 ms (bench.apiserver.Arrivals). Latency is the first poll that
sees the trace's row minus the wall-clock time the session file was closed (so it is late
by up to ~5 ms). The breakdown splits it at the daemon's `ingest.captured` event (the row
committed locally, git fields included).

Target: the issue asks only for "within a couple of seconds"; p99 <= 2 s is ours. Expect
~0.5-0.6 s, dominated by the 0.5 s nudge delay: the capture takes a few ms (see the
capture benchmark) and one request and the server's commit a few more. The floor column
is that delay plus the capture time measured in the same run.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from bench import harness
from bench.apiserver import TEAM_SYNC, ApiServer, Arrivals, server_rows
from bench.corpus import claude_project, claude_session
from bench.harness import Daemon, Event, Options, Repo, Workspace
from bench.report import Result, Row, distribution, fmt, percentile
from tracesd.sync.job import NUDGE_DELAY_S

SESSIONS = 40
REPOS = 4
SPACING_S = (0.9, 1.1)
P99_TARGET_S = 2.0
#: how long after the last session the bench waits for traces still missing on the server
ARRIVAL_TIMEOUT_S = 15.0
TOKEN = "bench-sync-latency-token"
_PROMPTS = (
    "Add a --dry-run flag to the sync command",
    "Why does the retry helper give up after one attempt?",
    "Write a test for the config loader's error messages",
)


@dataclass(frozen=True, slots=True)
class Sample:
    session_id: str
    repo: Repo
    #: wall clock (time.time()) when the session file was closed
    written_at: float
    #: when the daemon logged `ingest.captured` for it (None: never)
    captured_at: float | None = None
    #: when the row first showed in the server's database (None: never)
    visible_at: float | None = None

    @staticmethod
    def ms(start: float | None, end: float | None) -> float:
        """end - start in ms; infinite when either never happened."""
        return math.inf if start is None or end is None else (end - start) * 1000


def run(ws: Workspace, options: Options, result: Result) -> bool:
    """Measure, add the rows; False when a trace did not arrive or arrived wrong."""
    repos = harness.make_repos(ws.root / "repos", REPOS, ws.git_env)
    for repo in repos:
        claude_project(ws.home, repo.path).mkdir(parents=True)
    rng = random.Random(options.seed)
    server_log = ws.root / "server-latency.log"
    with ApiServer(ws.env, ws.root / "server-latency.db", server_log, token=TOKEN) as server:
        config = ws.home / ".config" / "tracesd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        team = "".join(f'{key} = "{value}"\n' for key, value in TEAM_SYNC.items())
        config.write_text(f'[sync]\napi_url = "{server.url}"\n{team}', encoding="utf-8")
        root = str(ws.home / ".claude" / "projects")
        env = {**ws.env, "TRACES_API_KEY": TOKEN}
        with Daemon(env, ws.root / "daemon.log") as daemon, Arrivals(server.db) as arrivals:
            started = daemon.wait_for("sync.started")
            daemon.wait_for("watcher.watching", lambda e: e.get("root") == root)
            daemon.wait_for("scan.finished", lambda e: e.get("reason") == "startup")
            harness.say(f"sync: writing {SESSIONS} sessions ~1 s apart, waiting for the server")
            written = _write_sessions(ws, repos, rng)
            visible = arrivals.wait([s.session_id for s in written], ARRIVAL_TIMEOUT_S)
            captured = _captured(daemon)
            batches = daemon.events("sync.batch")
            polls = arrivals.polls
        rows = server_rows(server.db)
    samples = [
        Sample(
            s.session_id,
            s.repo,
            s.written_at,
            captured.get(s.session_id),
            visible.get(s.session_id),
        )
        for s in written
    ]
    wrong = [
        f"{s.session_id}: {rows.get(s.session_id)}"
        for s in samples
        if rows.get(s.session_id) != (str(s.repo.path), s.repo.remote, s.repo.branch, s.repo.head)
    ]
    refused = server_log.read_text(encoding="utf-8").count('"server.unauthorized"')
    _report(result, samples, batches, started, refused, wrong)
    result.raw["latency"] = {
        "polls": polls,
        "refused_requests": refused,
        "wrong_rows": wrong[:20],
        "sync_batches": [
            {k: b.get(k) for k in ("timestamp", "sent", "succeeded", "duration_ms")}
            for b in batches
        ],
        "samples": [
            {
                "id": s.session_id,
                "repo": s.repo.path.name,
                "latency_ms": _finite(s.ms(s.written_at, s.visible_at)),
                "capture_ms": _finite(s.ms(s.written_at, s.captured_at)),
                "to_server_ms": _finite(s.ms(s.captured_at, s.visible_at)),
            }
            for s in samples
        ],
    }
    return not wrong and all(s.visible_at is not None for s in samples)


def _finite(ms: float) -> float | None:
    return ms if math.isfinite(ms) else None


def _write_sessions(ws: Workspace, repos: list[Repo], rng: random.Random) -> list[Sample]:
    samples: list[Sample] = []
    due = time.monotonic()
    for i in range(SESSIONS):
        time.sleep(max(0.0, due - time.monotonic()))  # pacing only; nothing is measured across it
        repo = repos[i % len(repos)]
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        data = claude_session(session_id, repo.path, repo.branch, rng.choice(_PROMPTS), rng)
        with open(claude_project(ws.home, repo.path) / f"{session_id}.jsonl", "wb") as f:
            f.write(data)
        samples.append(Sample(session_id, repo, time.time()))
        due += rng.uniform(*SPACING_S)
    return samples


def _captured(daemon: Daemon) -> dict[str, float]:
    """trace id -> when the daemon logged `ingest.captured` (right after its commit)."""
    return {
        e["trace_id"]: datetime.fromisoformat(e["timestamp"]).timestamp()
        for e in daemon.events("ingest.captured")
    }


def _report(
    result: Result,
    samples: list[Sample],
    batches: list[Event],
    started: Event,
    refused: int,
    wrong: list[str],
) -> None:
    n = len(samples)
    latency = distribution([s.ms(s.written_at, s.visible_at) for s in samples])
    capture_p50 = percentile([s.ms(s.written_at, s.captured_at) for s in samples], 50)
    to_server_p50 = percentile([s.ms(s.captured_at, s.visible_at) for s in samples], 50)
    durations = [float(b.get("duration_ms", 0.0)) for b in batches] or [math.nan]
    arrived = sum(s.visible_at is not None for s in samples)
    summary = ", ".join(f"{k} {latency[k]:.0f}" for k in ("p50", "p90", "p99", "max"))
    result.rows += [
        Row(f"capture -> visible on server (n={n}), ms", summary),
        Row(
            "capture -> visible on server, p99",
            fmt(latency["p99"] / 1000, "s", 3),
            f"p99 <= {P99_TARGET_S:g} s",
            f"{NUDGE_DELAY_S:g} s nudge delay + capture p50 {fmt(capture_p50, 'ms')}",
            latency["p99"] <= P99_TARGET_S * 1000,
        ),
        Row(
            "latency breakdown, p50",
            f"file written -> committed locally {fmt(capture_p50, 'ms')}; "
            f"-> visible on server {fmt(to_server_p50, 'ms')} "
            f"({NUDGE_DELAY_S * 1000:.0f} ms of it the nudge delay)",
        ),
        Row(
            "daemon sync runs",
            f"{len(batches)} batches for {sum(int(b.get('sent', 0)) for b in batches)} traces, "
            f"send + ack p50 {fmt(percentile(durations, 50), 'ms')}; interval "
            f"{started.get('interval_s')} s; {refused} requests refused (401)",
        ),
        Row(
            "server rows with their git fields",
            f"{n - len(wrong)}/{n} ({arrived} arrived)",
            f"{n}/{n}",
            passed=not wrong,
        ),
    ]
    result.raw["latency_ms"] = latency
    result.raw["latency_capture_p50_ms"] = capture_p50
    result.raw["latency_to_server_p50_ms"] = to_server_p50
    result.raw["latency_sync_started"] = started
