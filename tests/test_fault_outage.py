"""Fault suite, part 5: long backend outages, a misbehaving backend, wall-clock steps.

The outage tests run a real `tracesd run` process whose sync points at a real aiohttp server
on 127.0.0.1 (tests/faultserver.py) that is down for a while, either not listening at all
(connection refused) or answering 503, while 20,000 traces accumulate: 19,960 written into
the shared traces.db by another process (as the Traces CLI does, picked up by the outbox's
triggers) and 40 captured by the daemon from session files. `make test` runs them
time-scaled (a 20 s outage, max_backoff_s 4, interval_s 1); `make soak` runs the same with
the production values (60 s, 30 s) and a real 5-minute outage.

The daemon's backoff floor is 1 s (tracesd.sync.job's min_backoff_s, not configurable), so the
envelope of T3 in reliability-research.md is checked with base 1 s: after the n-th failure
in a row the next attempt comes at most min(cap, base * 2^n) later (full jitter, drawn in
[base, that ceiling]), and the attempts during an outage number at most
outage / (cap / 2) + log2(cap / base) + 2.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from tests.faultserver import FaultServer, Plan, ThreadedFaultServer
from tests.helpers import (
    Daemon,
    claude_session,
    make_repo,
    query,
    sync_config,
    tracesd,
)
from tests.test_sync import KEY, trace
from tracesd.config import Config
from tracesd.store.database import Store
from tracesd.store.outbox import Outbox
from tracesd.sync import backoff, client, job
from tracesd.sync.client import BackendClient, open_session
from tracesd.sync.job import SyncService

StartDaemon = Callable[..., Daemon]

#: the daemon's backoff floor (SyncService's min_backoff_s default)
BASE_S = 1.0
TRACES = 20_000
CAPTURED = 40
#: how late the daemon may make an attempt past its drawn delay (a loaded 2-core machine)
SLACK_S = 0.5
#: the RSS the daemon may gain during the outage, T3
RSS_GROWTH_MB = 20.0
#: the least throughput accepted once the server is back (bench: ~18,000/s on loopback)
MIN_RATE = 1_000.0


# ------------------------------------------------------------------- long outage


@dataclass
class Outage:
    mode: str  # "refused" or "503"
    outage_s: float
    cap_s: float
    interval_s: float


def test_a_20s_outage_with_the_server_not_listening_loses_nothing(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """T3, time-scaled, connection refused: nothing listens for 20 s while 20,000 traces
    accumulate (max_backoff_s 4, interval_s 1). Pass: after recovery all 20,000 are on the
    server (server rows == local rows, 0 missing, 0 failed) within max_backoff + 2 x
    interval + the time to ship them at the rate measured (>= 1,000/s); every gap between
    attempts <= min(cap, 1 s * 2^n) + 0.5 s; attempts <= 20/(4/2) + log2(4) + 2 = 14 and
    >= 20/4 - 1 (never abandoned); RSS grows <= 20 MB; status shows 20,000 pending and the
    error while down."""
    check_outage(daemons, home, tmp_path, fault, Outage("refused", 20.0, 4.0, 1.0))


def test_a_20s_outage_of_503_answers_loses_nothing(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """T3, time-scaled, 503: every request fails with 503 for 20 s while 20,000 traces
    accumulate. Pass: as for connection refused, and every failed attempt is exactly one
    request (the server's 503 count equals the daemon's sync.backoff events: one batch in
    flight, no retry storm)."""
    check_outage(daemons, home, tmp_path, fault, Outage("503", 20.0, 4.0, 1.0))


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["refused", "503"])
def test_a_5_minute_outage_with_production_backoff_loses_nothing(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer, mode: str
) -> None:
    """T3 at production values: the backend is down for 5 minutes (max_backoff_s 60,
    interval_s 30) while 20,000 traces accumulate. Pass: all arrive within 60 + 2 x 30 s +
    shipping time, 0 missing, attempts <= 300/30 + log2(60) + 2 (17), each gap
    <= min(60, 2^n) + 0.5 s, RSS grows <= 20 MB."""
    check_outage(daemons, home, tmp_path, fault, Outage(mode, 300.0, 60.0, 30.0))


def check_outage(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer, o: Outage
) -> None:
    repo = make_repo(tmp_path / "repo")
    (home / ".claude" / "projects").mkdir(parents=True)
    env = sync_config(home, fault.url, interval_s=o.interval_s, max_backoff_s=o.cap_s, key=KEY)
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    # warm up: one trace through the whole path, so the baseline holds what sync loads
    warm, _ = claude_session(home, repo, "before the outage")
    wait_until(lambda: warm in fault.server.stored, 30)
    time.sleep(0.5)
    rss_before = rss_mb(daemon.proc.pid)

    start_outage(fault, o.mode)
    started = time.monotonic()
    captured = accumulate(daemon, home, repo, o)
    rss_peak = rss_before
    down = status(home, env)
    while time.monotonic() < started + o.outage_s:
        rss_peak = max(rss_peak, rss_mb(daemon.proc.pid))
        time.sleep(0.25)
    rss_peak = max(rss_peak, rss_mb(daemon.proc.pid))
    end = status(home, env)
    failures_before = len(daemon.events("sync.backoff"))

    end_outage(fault, o.mode)
    recovered = time.monotonic()
    local = {r["id"] for r in query(daemon.db, "SELECT id FROM traces")}
    assert len(local) == TRACES + 1
    wait_until(lambda: local <= set(fault.server.stored), 120 + o.cap_s + 2 * o.interval_s)
    done = time.monotonic()
    # The server stores a batch before its answer reaches the daemon, which records the ack
    # a moment later: wait for that too (bounded), then hold the outbox to zero.
    wait_until(lambda: outbox_counts(daemon.db)["pending"] == 0, 10)
    outbox = outbox_counts(daemon.db)

    # attempts during the outage, as the daemon logged them (connection refused leaves no
    # trace on any server): one sync.backoff event per failed attempt
    backoffs = daemon.events("sync.backoff")[:failures_before]
    at = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in backoffs]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    ceilings = [min(o.cap_s, BASE_S * 2 ** e["failures"]) for e in backoffs[:-1]]
    over = [g - c for g, c in zip(gaps, ceilings, strict=True)]
    bound = o.outage_s / (o.cap_s / 2) + math.log2(o.cap_s / BASE_S) + 2
    successes = sorted(s.at for s in fault.server.seen if s.status == 200 and s.at >= recovered)
    ship_s = successes[-1] - successes[0]
    rate = TRACES / max(ship_s, 1e-3)
    numbers = {
        "mode": o.mode,
        "outage_s": o.outage_s,
        "cap_s": o.cap_s,
        "interval_s": o.interval_s,
        "attempts": len(backoffs),
        "attempt_bound": round(bound, 1),
        "largest_gap_s": round(max(gaps), 2),
        "smallest_gap_s": round(min(gaps), 2),
        "largest_overshoot_s": round(max(over), 3),
        "first_success_after_recovery_s": round(successes[0] - recovered, 2),
        "all_delivered_after_s": round(done - recovered, 2),
        "ship_s": round(ship_s, 2),
        "rate_per_s": round(rate),
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "rss_growth_mb": round(rss_peak - rss_before, 1),
        "pending_while_down": end["pending"],
        "last_error": end["last_error"],
        "daemon_cpu_s": cpu_s(daemon.proc.pid),
    }
    print("\noutage numbers:", json.dumps(numbers))

    assert set(fault.server.stored) == local, "server rows != local rows"
    assert outbox["pending"] == 0
    assert outbox["failed"] == 0, "a trace was given up on"
    assert all(set(fault.server.stored[i]) >= {"agentId", "title"} for i in captured)
    # the backoff envelope
    assert all(g <= c + SLACK_S for g, c in zip(gaps, ceilings, strict=True)), numbers
    assert all(g >= BASE_S - 0.05 for g in gaps), numbers  # no hot loop
    assert len(backoffs) <= bound, numbers
    assert len(backoffs) >= o.outage_s / o.cap_s - 1, numbers  # never abandoned
    if o.mode == "503":
        failed = [s for s in fault.server.seen if s.status == 503]
        assert len(failed) == len(backoffs), "one request per failed attempt"
    # recovery: the first attempt after it comes within the cap + 2 intervals, then the
    # whole backlog is shipped back to back
    assert done - recovered <= o.cap_s + 2 * o.interval_s + ship_s + SLACK_S, numbers
    assert rate >= MIN_RATE, numbers
    # bounded memory: the queue is on disk
    assert rss_peak - rss_before <= RSS_GROWTH_MB, numbers
    # status while down: the backlog and the failure
    for seen in (down, end):
        assert seen["consecutive_failures"] >= 1
        assert seen["last_error"]
        assert seen["next_attempt_at"]
    assert end["pending"] == TRACES
    expected = "cannot connect" if o.mode == "refused" else "http 503"
    assert expected in end["last_error"].lower(), end["last_error"]
    assert daemon.stop() == 0


def start_outage(fault: ThreadedFaultServer, mode: str) -> None:
    if mode == "refused":
        fault.await_(fault.server.stop_listening)
    else:

        def down(plan: Plan) -> None:
            plan.fail_status = 503
            plan.fail_until = time.monotonic() + 86_400

        fault.call(down, fault.server.plan)


def end_outage(fault: ThreadedFaultServer, mode: str) -> None:
    if mode == "refused":
        fault.await_(fault.server.listen_again)
    else:

        def up(plan: Plan) -> None:
            plan.fail_until = 0.0

        fault.call(up, fault.server.plan)


def accumulate(daemon: Daemon, home: Path, repo: Path, o: Outage) -> list[str]:
    """20,000 traces in the first half of the outage: 20 rounds of 998 rows written by
    another process and 2 sessions captured by the daemon. Returns the captured ids."""
    rounds = CAPTURED // 2
    per_round = (TRACES - CAPTURED) // rounds
    spacing = o.outage_s / 2 / rounds
    captured = []
    with sqlite3.connect(daemon.db, timeout=30) as conn:
        for r in range(rounds):
            rows = [
                (
                    f"cli-{r:02d}-{i:04d}",
                    "codex",
                    f"prompt {r}/{i}",
                    "the latest message " * 4,
                    1_795_000_000_000 + r * 1000 + i,
                    str(repo),
                    "https://github.com/example/project.git",
                    "main",
                    "a" * 40,
                )
                for i in range(per_round)
            ]
            conn.executemany(
                "INSERT INTO traces (id, agent_id, title, preview, timestamp, directory,"
                " git_remote_url, git_branch, git_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.commit()
            captured += [claude_session(home, repo, f"during {r}.{k}")[0] for k in range(2)]
            time.sleep(spacing)
    for trace_id in captured:
        daemon.row(trace_id, timeout=30)
    return captured


def status(home: Path, env: dict[str, str]) -> dict[str, Any]:
    out = tracesd(home, "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    sync_status: dict[str, Any] = json.loads(out.stdout)["sync"]
    return sync_status


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / 100, 2)


def outbox_counts(db: Path) -> dict[str, Any]:
    """Traces not yet acknowledged, and traces failed for good, in the daemon's outbox."""
    return query(
        db,
        "SELECT SUM(version > sent_version) AS pending,"
        " SUM(failed_version IS NOT NULL) AS failed FROM tracesd_outbox",
    )[0]


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ------------------------------------------------------------ backend misbehaviour

#: the production timeouts, scaled down so a slow-loris test takes 2 s instead of 30
SCALE = 15


@dataclass
class Rig:
    store: Store
    outbox: Outbox
    server: FaultServer
    make: Callable[..., SyncService]


@pytest.fixture
async def rig(make_config: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Rig]:
    """SyncService against a FaultServer, with the production timeouts scaled by 1/15."""
    server = await FaultServer().start()
    store = await Store.open(tmp_path / "traces.db")
    outbox = Outbox(store, scope="all")
    t = client.TIMEOUT
    scaled = aiohttp.ClientTimeout(
        total=t.total / SCALE if t.total else None,
        connect=t.connect / SCALE if t.connect else None,
        sock_read=t.sock_read / SCALE if t.sock_read else None,
    )
    session = open_session(timeout=scaled)
    services: list[SyncService] = []

    def make(**overrides: Any) -> SyncService:
        settings = {
            "sync__interval_s": 60,
            "sync__max_backoff_s": 1,
            "sync__scope": "all",
            **overrides,
        }
        config = make_config(sync__api_url=server.url, **settings)
        service = SyncService(
            outbox,
            BackendClient(session, config.sync.api_url, KEY),
            config.sync,
            min_backoff_s=0.05,
            rng=random.Random(7),
        )
        services.append(service)
        return service

    yield Rig(store, outbox, server, make)
    for service in services:
        await service.close(1)
    await session.close()
    await store.close()
    await server.close()


async def test_a_200_with_truncated_json_is_retried_not_trusted(rig: Rig) -> None:
    """Row 17: 200 whose JSON body is cut off. Pass: nothing is acknowledged (1 pending),
    the run backs off as after a 5xx, and the next run delivers the trace."""
    await rig.store.upsert(trace("a"))
    rig.server.plan.answer_body = b'{"results": [{"externalId": "a", "sta'
    service = rig.make()
    await service.sync_once()
    assert (await rig.outbox.counts()).pending == 1
    assert service.state.consecutive_failures == 1
    assert "malformed" in (service.state.last_error or "")
    rig.server.plan.answer_body = None
    await service.sync_once(force=True)
    assert set(rig.server.stored) == {"a"}
    assert (await rig.outbox.counts()).pending == 0


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_a_redirect_to_another_host_is_never_followed(rig: Rig, status: int) -> None:
    """Row 17: the batch endpoint answers a redirect to another host (127.0.0.2). Pass: the
    other host gets no request at all (so never the Authorization header), the trace stays
    pending, the run backs off naming the status, and every request that did go out went to
    the configured host."""
    other = await FaultServer().start("127.0.0.2")
    try:
        await rig.store.upsert(trace("a"))
        rig.server.plan.redirect_to = other.url + "/v1/traces/batch"
        rig.server.plan.redirect_status = status
        service = rig.make()
        await service.sync_once()
        await service.sync_once(force=True)
        assert other.seen == []
        assert other.stored == {}
        assert [s.status for s in rig.server.seen] == [status, status]
        assert all(s.authorization == f"Bearer {KEY}" for s in rig.server.seen)
        assert (await rig.outbox.counts()).pending == 1
        assert f"HTTP {status}" in (service.state.last_error or "")
    finally:
        await other.close()


async def test_a_slow_loris_answer_is_cut_at_the_total_timeout_then_retried(rig: Rig) -> None:
    """Row 17, T6: the server answers 200 and then trickles one byte every 0.25 s, which
    keeps a per-read timeout from ever firing. Pass: the production client timeout (here
    scaled by 1/15: total 2 s) ends the request within total + 1 s, the trace stays
    pending with a "timed out" error, and the next run delivers it."""
    await rig.store.upsert(trace("a"))
    rig.server.plan.trickle_s = 0.25
    service = rig.make()
    started = time.monotonic()
    await asyncio.wait_for(service.sync_once(), 10)
    elapsed = time.monotonic() - started
    total = (client.TIMEOUT.total or math.inf) / SCALE
    assert elapsed <= total + 1
    assert rig.server.streamed >= 3  # it did trickle: the read timeout alone would not end it
    assert (await rig.outbox.counts()).pending == 1
    assert "timed out" in (service.state.last_error or "")
    rig.server.plan.trickle_s = None
    await service.sync_once(force=True)
    assert set(rig.server.stored) == {"a"}


async def test_a_10_mb_error_body_is_not_read_past_the_cap(rig: Rig) -> None:
    """Row 17: a 500 whose body is 10 MB. Pass: the client stops reading at MAX_BODY
    (1 MiB; the error names the cap), the trace stays pending, the run backs off, and the
    next run delivers it."""
    await rig.store.upsert(trace("a"))
    rig.server.plan.error_body_bytes = 10 * 1024 * 1024
    service = rig.make()
    await service.sync_once()
    assert f"larger than {client.MAX_BODY}" in (service.state.last_error or "")
    assert service.state.consecutive_failures == 1
    assert (await rig.outbox.counts()).pending == 1
    rig.server.plan.error_body_bytes = 0
    await service.sync_once(force=True)
    assert set(rig.server.stored) == {"a"}


# ------------------------------------------------------------------ clock steps


class SteppedClock:
    """The wall clock as sync and APScheduler see it, stepped at will; the monotonic clock
    keeps running (as when NTP steps the clock)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        clock = self

        class Stepped(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return datetime.now(tz) + timedelta(seconds=clock.offset)

        fake_time = SimpleNamespace(time=lambda: time.time() + clock.offset)
        fake_time.monotonic = time.monotonic
        monkeypatch.setattr(job, "time", fake_time)
        monkeypatch.setattr(backoff, "time", fake_time)
        import apscheduler.executors.base
        import apscheduler.schedulers.base
        import apscheduler.triggers.interval

        for module in (
            apscheduler.schedulers.base,
            apscheduler.executors.base,
            apscheduler.triggers.interval,
        ):
            monkeypatch.setattr(module, "datetime", Stepped)
        monkeypatch.setattr(backoff, "CLOCK_CHECK_S", 0.2)

    def step(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    return SteppedClock(monkeypatch)


async def until(predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_clock_step_back_during_a_backoff_does_not_stall_sync(
    rig: Rig, clock: SteppedClock
) -> None:
    """Row 18: the wall clock steps back 1 h while sync backs off (cap 1 s). Pass: the
    backoff runs on the monotonic clock, so the trace arrives within 1 s of the outage's
    end plus 1 s of slack, not an hour later."""
    await rig.store.upsert(trace("a"))
    rig.server.plan.fail_until = time.monotonic() + 1.0
    service = rig.make(sync__interval_s=60)
    await service.start()
    await until(lambda: service.state.consecutive_failures >= 1, 5)
    clock.step(-3600)
    waited = await until(lambda: "a" in rig.server.stored, 5)
    assert waited <= 1.0 + 1.0 + 1.0


async def test_a_clock_step_back_does_not_stall_the_interval_job(
    rig: Rig, clock: SteppedClock
) -> None:
    """Row 18: no backoff, an interval job every 0.5 s, no capture to pull it forward; the
    wall clock steps back 1 h. Pass: a trace written afterwards arrives within 0.5 s +
    the 0.2 s clock check + 1 s of slack (APScheduler alone would wait the hour)."""
    service = rig.make(sync__interval_s=0.5)
    await service.start()
    await rig.store.upsert(trace("before"))
    await until(lambda: "before" in rig.server.stored, 5)
    clock.step(-3600)
    await asyncio.sleep(0.3)
    await rig.store.upsert(trace("after"))
    waited = await until(lambda: "after" in rig.server.stored, 5)
    assert waited <= 0.5 + 0.2 + 1.0


async def backing_off(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> tuple[SyncService, list[float]]:
    """A service in a 2 s backoff (Retry-After) with a 0.5 s interval job whose runs are
    counted; the clock check is made slow, so what is seen is APScheduler and the backoff."""
    monkeypatch.setattr(backoff, "CLOCK_CHECK_S", 60.0)
    await rig.store.upsert(trace("a"))
    rig.server.plan.fail_next = 1
    rig.server.plan.retry_after = "2"  # a backoff of 2 s exactly
    service = rig.make(sync__interval_s=0.5)
    runs: list[float] = []
    tick = service._tick

    async def counted() -> None:
        runs.append(time.monotonic())
        await tick()

    service._tick = counted  # type: ignore[method-assign]
    await service.start()
    await until(lambda: service.state.consecutive_failures == 1, 5)
    return service, runs


async def test_a_clock_step_forward_makes_no_burst_of_runs(
    rig: Rig, clock: SteppedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 18: the wall clock steps forward 1 h during a 2 s backoff: 7,200 runs of the
    0.5 s job are "missed". Pass: in the 2 s that follow, at most the 0.5 s cadence (4)
    plus one coalesced run, and the trace arrives."""
    _, runs = await backing_off(rig, monkeypatch)
    clock.step(3600)
    stepped = time.monotonic()
    await asyncio.sleep(2.0)
    assert len([r for r in runs if r >= stepped]) <= 2.0 / 0.5 + 1
    await until(lambda: "a" in rig.server.stored, 5)


async def test_a_clock_step_forward_does_not_cut_the_backoff_short(
    rig: Rig, clock: SteppedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 18: the wall clock steps forward 1 h during a 2 s backoff and a capture nudges
    sync at once. Pass: no request until the backoff ends by the monotonic clock (>= 2 s
    after the failure), then the trace arrives."""
    service, _ = await backing_off(rig, monkeypatch)
    failed_at = rig.server.seen[0].at
    clock.step(3600)
    service.nudge()
    await asyncio.sleep(1.0)
    assert len(rig.server.seen) == 1  # still backing off
    await until(lambda: "a" in rig.server.stored, 5)
    assert rig.server.seen[1].at - failed_at >= 2.0 - 0.05


async def test_a_stored_deadline_far_in_the_future_is_clamped_on_restart(rig: Rig) -> None:
    """Row 18: a backoff deadline stored by a run whose clock was a day ahead (or stepped
    back since) is not honoured for a day. Pass: after a restart the wait is clamped to
    the longest backoff there is (Retry-After's 15 min cap)."""
    await rig.outbox.save_state(consecutive_failures=3, next_attempt_at=time.time() + 86_400)
    service = rig.make()
    await service.start()
    assert service._backoff.left() <= backoff.RETRY_AFTER_MAX_S
    assert (await service.sync_once()).skipped
