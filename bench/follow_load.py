"""follow, load: 200 Claude Code sessions appending messages at once.

The sessions (in 10 real repositories) are written first, a prompt and a reply each, and
the bench waits until those 400 messages are on the server (so every trace is synced and
followed). Then each session appends one message every 10 s, the sessions staggered evenly
(200 / 10 s = 20 appends/s in all), for 60 s (20 s with --quick): 200 agents at work, each
writing a line every few seconds within a turn and waiting on the user between turns, is
well below that. The daemon's CPU (utime +
stime from /proc, from the first append until 1 s after the window, or until the last
message is on the server if that is later; over the window's length) must stay <= 10 % of
a core, and its peak RSS (VmHWM, start-up included) <= 120 MB. Afterwards every message
must be on the server, once: the server's message rows are counted. Delivery lag: line
written -> message row first seen (polled every 20 ms).

Without --quick two more windows follow on the same daemon, reported without a target:
one message every 5 s per session (40 appends/s) for 30 s, and one per second (200
appends/s) for 20 s. The per-append milliseconds are the number to compare across rates.
For the 200/s window a second floor is measured: watchdog alone (`watch_floor`), the same
number of files appended at the same pacing, watched by an Observer with tracesd's event
filter and a handler that only counts.

Floor, same run: a second daemon in a fresh HOME, `[sync] messages = false`, the same
sessions and the same appends at the headline rate for 20 s (10 s with --quick): what
capturing the changes and syncing the traces cost without message follow.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness, watch_floor
from bench.apiserver import Arrivals, MessageArrivals
from bench.follow_session import Appended, LiveSession, following, session_id
from bench.harness import Daemon, Options, Workspace, read_only
from bench.measure import BenchError, cpu_seconds, status_mb
from bench.records import Pool
from bench.report import Result, Row, distribution, fmt

SESSIONS = 200
REPOS = 10
CPU_TARGET = 10.0
RSS_TARGET_MB = 120.0
#: after the sessions arrived, and after a window: for the acknowledgements in flight
SETTLE_S = 1.0
#: the floor daemon's window (one, at the headline rate)
FLOOR_WINDOW_S = 20.0
#: (seconds between a session's appends, window seconds); the first is the headline
WINDOWS = ((10.0, 60.0), (5.0, 30.0), (1.0, 20.0))
QUICK_WINDOWS = ((10.0, 20.0),)
#: how long after a window the bench waits for messages still missing
DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Window:
    period_s: float
    window_s: float
    appended: list[Appended]
    #: daemon CPU seconds from the first append to SETTLE_S after the window (or until
    #: the last message was on the server, if later)
    cpu_s: float
    #: after the last append: until every message was on the server
    drain_s: float
    lag_ms: dict[str, float]
    missing: int

    @property
    def rate(self) -> float:
        return len(self.appended) / self.window_s

    @property
    def cpu_ms(self) -> float:
        """Daemon CPU per append."""
        return 1000 * self.cpu_s / len(self.appended)

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.window_s


@dataclass(frozen=True, slots=True)
class Daemonrun:
    windows: list[Window]
    #: VmHWM once the sessions were synced (and followed), before the appends; at the end
    ready_mb: float
    peak_mb: float
    #: lines written in all (the first two of each session included)
    lines: int
    #: the server's message rows at the end
    message_rows: int
    sync_batches: int
    #: warnings and errors the daemon logged, by event (its first 80 characters)
    warnings: Counter[str]


def run(ws: Workspace, options: Options, result: Result) -> bool:
    plan = QUICK_WINDOWS if options.quick else WINDOWS
    followed = _daemon(ws, options, plan, messages=True)
    # the floor: the same sessions and appends, messages off (capture and trace sync only)
    with Workspace("follow-floor") as floor_ws:
        window_s = FLOOR_WINDOW_S / 2 if options.quick else FLOOR_WINDOW_S
        floor = _daemon(floor_ws, options, plan[:1], messages=False, window_s=window_s)
    floor_cpu = floor.windows[0].cpu_percent
    # watchdog alone, for the busiest window (its appends' pacing and size)
    busiest = followed.windows[-1]
    watched = None
    if not options.quick:
        with Workspace("follow-watch-floor") as watch_ws:
            watched = watch_floor.measure(
                watch_ws.root / "sessions",
                files=SESSIONS,
                period_s=busiest.period_s,
                window_s=busiest.window_s,
                line_bytes=round(sum(a.size for a in busiest.appended) / len(busiest.appended)),
            )
    missing = sum(w.missing for w in followed.windows)
    for index, w in enumerate(followed.windows):
        label = f"load: {SESSIONS} sessions, 1 message/{w.period_s:g} s each ({w.rate:.0f}/s)"
        headline = index == 0
        result.rows += [
            Row(
                f"{label}, daemon CPU",
                f"{fmt(w.cpu_percent, '% of a core')} ({fmt(w.cpu_ms, 'ms', 2)} per append)",
                f"<= {CPU_TARGET:g} %" if headline else "",
                f"messages = false, same appends at 1/{plan[0][0]:g} s: {fmt(floor_cpu, '%')} "
                f"({fmt(floor.windows[0].cpu_ms, 'ms', 2)} per append)",
                w.cpu_percent <= CPU_TARGET if headline else None,
            ),
            *(
                [
                    Row(
                        f"{label}: watchdog alone, same files and appends",
                        f"{fmt(watched.cpu_percent, '% of a core')} "
                        f"({fmt(watched.cpu_ms, 'ms', 2)} per append, {watched.events:,} events)",
                    )
                ]
                if watched is not None and w is busiest
                else []
            ),
            Row(
                f"{label}, delivery lag, ms",
                ", ".join(f"{k} {w.lag_ms[k]:.0f}" for k in ("p50", "p90", "p99", "max"))
                + f"; all on server {fmt(w.drain_s, 's', 2)} after the last append; "
                f"{len(w.appended):,} appends in {w.window_s:g} s",
            ),
        ]
    result.rows += [
        Row(
            "load: daemon peak RSS (VmHWM)",
            fmt(followed.peak_mb, "MB"),
            f"<= {RSS_TARGET_MB:g} MB",
            f"{fmt(followed.ready_mb, 'MB')} before the appends; messages = false: "
            f"{fmt(floor.peak_mb, 'MB')}",
            followed.peak_mb <= RSS_TARGET_MB,
        ),
        Row(
            "load: message rows on the server",
            f"{followed.message_rows:,} ({missing} appended never seen)",
            f"{followed.lines:,}",
            passed=followed.message_rows == followed.lines and not missing,
        ),
    ]
    result.rows.append(
        Row(
            "load: warnings the daemon logged",
            "; ".join(f"{n} x {event}" for event, n in followed.warnings.most_common(3)) or "none",
        )
    )
    result.raw["load"] = {
        "sessions": SESSIONS,
        "followed": _raw(followed),
        "floor": _raw(floor),
        "watchdog_alone": None if watched is None else dataclasses.asdict(watched),
    }
    return followed.message_rows == followed.lines and not missing


def _daemon(
    ws: Workspace,
    options: Options,
    plan: tuple[tuple[float, float], ...],
    *,
    messages: bool,
    window_s: float | None = None,
) -> Daemonrun:
    repos = harness.make_repos(ws.root / "repos", REPOS, ws.git_env)
    rng = random.Random(options.seed + 1)
    pool = Pool(rng)
    sessions = [LiveSession(ws, repos[i % REPOS], session_id(rng), pool) for i in range(SESSIONS)]
    windows: list[Window] = []
    with following(ws, "load", messages=messages) as (server, daemon):
        with (
            MessageArrivals(server.db, interval_s=0.02) as arrivals,
            Arrivals(server.db, interval_s=0.02) as traces,
        ):
            harness.say(f"follow: {SESSIONS} sessions (messages {'on' if messages else 'off'})")
            first = [uuid for s in sessions for uuid in s.start()]
            if len(traces.wait([s.id for s in sessions], 120.0)) != SESSIONS or (
                messages and len(arrivals.wait(first, 120.0)) != len(first)
            ):
                raise BenchError("the sessions (and their first messages) never all arrived")
            time.sleep(SETTLE_S)  # the last acknowledgements recorded
            ready_mb = status_mb(daemon.pid, "VmHWM")
            for period_s, plan_window_s in plan:
                windows.append(
                    _window(
                        sessions, daemon, arrivals, period_s, window_s or plan_window_s, messages
                    )
                )
            peak_mb = status_mb(daemon.pid, "VmHWM")
        lines = len(first) + sum(len(w.appended) for w in windows)
        warnings = Counter(
            str(e["event"])[:80] for e in daemon.events() if e.get("level") in ("warning", "error")
        )
        return Daemonrun(
            windows,
            ready_mb,
            peak_mb,
            lines,
            _message_rows(server.db),
            len(daemon.events("sync.batch")),
            warnings,
        )


def _window(
    sessions: list[LiveSession],
    daemon: Daemon,
    arrivals: MessageArrivals,
    period_s: float,
    window_s: float,
    messages: bool,
) -> Window:
    harness.say(
        f"follow: {len(sessions)} sessions appending 1 message/{period_s:g} s for {window_s:g} s"
    )
    appended: list[Appended] = []
    step = period_s / len(sessions)
    rounds = round(window_s / period_s)
    cpu_before = cpu_seconds(daemon.pid)
    started = time.monotonic()
    for r in range(rounds):
        for i, session in enumerate(sessions):
            due = started + r * period_s + i * step
            time.sleep(max(0.0, due - time.monotonic()))  # pacing only
            appended.append(session.append())
    time.sleep(max(0.0, started + window_s + SETTLE_S - time.monotonic()))
    seen = arrivals.wait([a.uuid for a in appended], DRAIN_TIMEOUT_S) if messages else {}
    cpu_s = cpu_seconds(daemon.pid) - cpu_before
    lags = [(seen[a.uuid] - a.written_at) * 1000 for a in appended if a.uuid in seen]
    return Window(
        period_s,
        window_s,
        appended,
        cpu_s,
        max(0.0, max(seen.values(), default=0.0) - appended[-1].written_at),
        distribution(lags or [math.nan]),
        len(appended) - len(seen) if messages else 0,
    )


def _raw(run: Daemonrun) -> dict[str, Any]:
    return {
        "ready_mb": run.ready_mb,
        "peak_mb": run.peak_mb,
        "lines": run.lines,
        "message_rows": run.message_rows,
        "sync_batches": run.sync_batches,
        "warnings": dict(run.warnings),
        "windows": [
            {
                "period_s": w.period_s,
                "window_s": w.window_s,
                "appends": len(w.appended),
                "cpu_s": w.cpu_s,
                "drain_s": w.drain_s,
                "lag_ms": w.lag_ms,
                "missing": w.missing,
            }
            for w in run.windows
        ],
    }


def _message_rows(db: Path) -> int:
    conn = read_only(db)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()
