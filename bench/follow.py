"""follow: a session's new messages reach the server as it grows (issue 14's three numbers).

Every part runs a real `tracesd run` whose config sets nothing but `[sync] api_url` and
`scope = "all"` (messages follow by default), syncing to a real `tracesd server` with auth
on, and Claude Code sessions in real git repositories that grow by whole lines as the
agent writes them: an assistant message, then a user message, alternating, with 200 B -
2 KB of text each (bench.follow_session). A thread polls the server's SQLite read-only
(bench.apiserver.MessageArrivals) and notes when each message's row first shows.

1. Latency (here): one session appends a message about once a second, ~40 times. Latency
   is the first poll that sees the message's row minus the wall-clock time the line was
   written (late by up to ~5 ms). Target p99 <= 2 s. Floor, per append, same run: the
   line read and queued locally (a thread polls the daemon's tracesd_message_follow
   offset): the capture, then the 0.5 s nudge delay (tracesd.sync.job.NUDGE_DELAY_S: a
   change pulls the next sync run forward to 0.5 s later, so a burst of lines goes in one
   run, and that run reads the session just before it sends), plus one request: a
   one-message batch POSTed to the same server by the bench, timed, p50 of 20. (A growing
   Claude Code session does not change its trace's row, so no trace request precedes the
   messages.)
2. Load (bench.follow_load): 200 sessions appending at once; daemon CPU and peak RSS.
3. Bytes read per append (bench.follow_reads): a 50 MB session, then single-line appends;
   what the follower's reader reads from the file, by strace.
"""

from __future__ import annotations

import math
import random
import time

from bench import follow_load, follow_reads, harness
from bench.apiserver import MessageArrivals
from bench.follow_session import (
    Appended,
    FollowOffsets,
    LiveSession,
    following,
    request_ms,
    session_id,
)
from bench.harness import Options, Workspace
from bench.measure import BenchError
from bench.records import Pool
from bench.report import Result, Row, distribution, fmt, percentile
from tracesd.sync.job import NUDGE_DELAY_S

APPENDS = 40
QUICK_APPENDS = 20
SPACING_S = (0.9, 1.1)
P99_TARGET_S = 2.0
#: requests timed for the floor
REQUESTS = 20
#: how long after the last append the bench waits for messages still missing
ARRIVAL_TIMEOUT_S = 15.0


def run(options: Options) -> Result:
    result = Result("follow")
    for part in (_latency, follow_load.run, follow_reads.run):
        with Workspace("follow") as ws:  # each its own HOME: its own daemon database
            ws.keep = not part(ws, options, result)
    return result


def _latency(ws: Workspace, options: Options, result: Result) -> bool:
    """Measure, add the rows; False when a message did not arrive."""
    (repo,) = harness.make_repos(ws.root / "repos-latency", 1, ws.git_env)
    rng = random.Random(options.seed)
    session = LiveSession(ws, repo, session_id(rng), Pool(rng))
    appends = QUICK_APPENDS if options.quick else APPENDS
    with following(ws, "latency") as (server, daemon):
        with MessageArrivals(server.db) as arrivals, FollowOffsets(ws.db) as offsets:
            first = session.start()
            if len(arrivals.wait(first, 30.0)) != len(first):
                raise BenchError("the session's first messages never reached the server")
            harness.say(f"follow: {appends} appends ~1 s apart to one session")
            written = _append(session, appends, rng)
            visible = arrivals.wait([a.uuid for a in written], ARRIVAL_TIMEOUT_S)
            read = [offsets.wait(session.id, a.end, 1.0) for a in written]
            polls = arrivals.polls
        request = distribution(request_ms(server, REQUESTS, rng))
    latencies = [_ms(a.written_at, visible.get(a.uuid)) for a in written]
    queued = [_ms(a.written_at, at) for a, at in zip(written, read, strict=True)]
    floors = [q + request["p50"] for q in queued]
    dist = distribution(latencies)
    floor = distribution(floors)
    arrived = sum(a.uuid in visible for a in written)
    summary = ", ".join(f"{k} {dist[k]:.0f}" for k in ("p50", "p90", "p99", "max"))
    result.rows += [
        Row(f"latency: line written -> message on server (n={len(written)}, 1/s), ms", summary),
        Row(
            "latency: line written -> message on server, p99",
            fmt(dist["p99"] / 1000, "s", 3),
            f"p99 <= {P99_TARGET_S:g} s",
            f"p99 {fmt(floor['p99'] / 1000, 's', 3)}: line read and queued (capture, then "
            f"the {NUDGE_DELAY_S:g} s nudge delay) + one request",
            dist["p99"] <= P99_TARGET_S * 1000,
        ),
        Row(
            "latency breakdown, p50",
            f"line written -> read and queued by the sync run "
            f"{fmt(percentile(queued, 50), 'ms')} ({NUDGE_DELAY_S * 1000:.0f} ms of it the "
            f"nudge delay); -> on server {fmt(dist['p50'], 'ms')}; one request "
            f"{fmt(request['p50'], 'ms')} (p90 "
            f"{fmt(request['p90'], 'ms')})",
        ),
        Row(
            "latency: messages on the server",
            f"{arrived}/{len(written)}",
            f"{len(written)}/{len(written)}",
            passed=arrived == len(written),
        ),
    ]
    result.raw["latency"] = {
        "latency_ms": dist,
        "floor_ms": floor,
        "request_ms": request,
        "polls": polls,
        "sync_batches": len(daemon.events("sync.batch")),
        "samples": [
            {"uuid": a.uuid, "bytes": a.size, "latency_ms": _finite(m), "queued_ms": _finite(q)}
            for a, m, q in zip(written, latencies, queued, strict=True)
        ],
    }
    return arrived == len(written)


def _append(session: LiveSession, count: int, rng: random.Random) -> list[Appended]:
    written: list[Appended] = []
    due = time.monotonic()
    for _ in range(count):
        time.sleep(max(0.0, due - time.monotonic()))  # pacing only; nothing is measured across it
        written.append(session.append())
        due += rng.uniform(*SPACING_S)
    return written


def _ms(start: float, end: float | None) -> float:
    return math.inf if end is None else (end - start) * 1000


def _finite(ms: float) -> float | None:
    return ms if math.isfinite(ms) else None
