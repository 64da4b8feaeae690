"""Sync: pending traces -> the Traces API, durably, in batches, whatever the network does.

A run claims pending traces from the outbox (at most `batch_size`, at most ~1 MiB of JSON),
sends them, and records per trace what the server said (wire.py's outcomes): Stored (the
version sent is acknowledged), Refused for good (failed until the trace changes; never
blocks the others), or NotNow (stays pending). A run keeps going while there is work and
stops at the first "not now", which starts a durable backoff: exponential with full jitter
between 1 s and `max_backoff_s`, at least the server's Retry-After (clamped), reset by a
success, and kept in the database so a restart does not hammer a server that is down.
Retryable failures are retried forever; nothing is dropped by age. A refused API key
(KeyRefused) pauses sync (retried at the cap) without failing any trace.

APScheduler lives here only: one interval job (`max_instances=1`, `coalesce=True`), pulled
forward shortly after a capture so a new trace usually reaches the server within seconds.
A run with nothing pending makes no HTTP request and writes nothing.

Clocks: the backoff runs on the monotonic clock (backoff.py). APScheduler keeps its run
times on the wall clock: a step forward makes at most one run (coalesce; the backoff still
holds), and a step back would delay the next run by the size of the step, so the job's next
run is moved with every step the ClockWatch sees.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tracesd.capture.exclude import Exclusions
from tracesd.config import SyncConfig
from tracesd.errors import StoreError
from tracesd.status.document import MessagesStatus, Refusal, SyncActivity, SyncStatus
from tracesd.store.outbox import Outbox, Overview, Pending, SyncState
from tracesd.sync.backoff import Backoff, ClockWatch
from tracesd.sync.client import BackendClient
from tracesd.sync.delivery import Delivered, Delivery
from tracesd.sync.follow import Follower, Sent
from tracesd.sync.wire import Batch, KeyRefused, NotNow, Outcome, Outgoing, Refused, Stored, cut

log = structlog.get_logger("tracesd.sync")

#: how long after a capture the early run starts (captures in a burst share it)
NUDGE_DELAY_S = 0.5


@dataclass(slots=True)
class Report:
    """What one sync run did (POST /sync answers with it)."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    skipped: bool = False
    #: messages the server stored, and refused for good (message follow)
    messages_stored: int = 0
    messages_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
        }


@dataclass(frozen=True, slots=True)
class _OnTheWire:
    """A batch sent: what was claimed, and the answer to come (with its duration, ms)."""

    batch: Batch
    answer: asyncio.Task[tuple[Delivered, float]]

    @property
    def ids(self) -> set[str]:
        return {pending.trace.id for pending, _ in self.batch}


class SyncService:
    def __init__(
        self,
        outbox: Outbox,
        client: BackendClient,
        config: SyncConfig,
        *,
        exclude: Iterable[str] = (),
        min_backoff_s: float = 1.0,
        rng: random.Random | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        use_batch: bool = True,
        follower: Follower | None = None,
    ) -> None:
        self._outbox = outbox
        self._config = config
        self._excluded = Exclusions(exclude).excluded
        self._backoff = Backoff(min_backoff_s, config.max_backoff_s, rng or random.Random())
        self._clock = ClockWatch(self._clock_stepped)
        self._on_crash = on_crash
        self._lock = asyncio.Lock()
        self._delivery = Delivery(client, use_batch=use_batch)
        self._follower = follower
        #: a nudge came while a run was in flight: the next run is scheduled when it ends
        self._rerun = False
        self._closed = False
        self._scheduler: AsyncIOScheduler | None = None
        self._job: Job | None = None
        self._running: asyncio.Task[Any] | None = None
        self._unsaved = False
        self.state = SyncState()

    @property
    def requests(self) -> int:
        """HTTP requests made since start."""
        follow = self._follower.requests if self._follower is not None else 0
        return self._delivery.requests + follow

    async def messages(self) -> MessagesStatus:
        """Message follow's numbers, for status."""
        if self._follower is None:
            return MessagesStatus(enabled=False)
        c = await self._follower.counts()
        return MessagesStatus(
            True, c.followed, c.pending, c.refused, c.sent, c.oversized, c.unreadable
        )

    def status(self, outbox: Overview, messages: MessagesStatus) -> SyncStatus:
        """The `sync` part of `tracesd status` (INTERFACE section 6), with the outbox's
        numbers as the status document read them."""
        activity = SyncActivity(
            auth_paused=self.state.auth_paused,
            mode=self._delivery.mode,
            requests=self.requests,
            failures=tuple(Refusal(trace_id, error) for trace_id, error in outbox.failures),
        )
        return SyncStatus.of(self._config, outbox, self.state, activity, messages)

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.state = SyncState.load(await self._outbox.state())
        self._backoff.resume(self.state.next_attempt_at)
        loop = asyncio.get_running_loop()
        self._scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        first = time.time() + max(NUDGE_DELAY_S, self._backoff.left())
        self._job = self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=self._config.interval_s,
            id="sync",
            max_instances=1,
            coalesce=True,
            next_run_time=_at(first),
        )
        self._scheduler.start()
        self._clock.start()
        log.info(
            "sync.started",
            api_url=self._config.api_url,
            interval_s=self._config.interval_s,
            next_attempt_at=self.state.next_attempt_at,
        )

    async def close(self, grace_s: float) -> None:
        """Stop scheduling; give a run in flight `grace_s` to finish, then cancel it. What the
        server did not acknowledge stays pending."""
        self._closed = True
        self._clock.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        running = self._running
        if running is not None and not running.done():
            done, _ = await asyncio.wait({running}, timeout=grace_s)
            if not done:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                log.warning("sync.cancelled", grace_s=grace_s)
        if self._follower is not None:
            await self._follower.close(grace_s)

    def nudge(self) -> None:
        """A trace changed: run soon (not before a backoff ends, never twice for a burst)."""
        job = self._job
        if job is None or self._scheduler is None:
            return
        if self._running is not None and not self._running.done():
            # Moving the job to a time while it runs only makes APScheduler skip that run
            # (and warn): the run in flight schedules the next one when it ends.
            self._rerun = True
            return
        when = time.time() + max(NUDGE_DELAY_S, self._backoff.left())
        if job.next_run_time is None or job.next_run_time.timestamp() > when:
            job.modify(next_run_time=_at(when))

    def changed(self, trace_ids: Collection[str]) -> None:
        """These traces' session files changed: their messages are read by the run that
        starts soon, just before it sends them; while sync waits out a backoff they are read
        now all the same (local work: the queue and status know them at once)."""
        if self._follower is None or not trace_ids or self._closed:
            return  # after close: the next start reads every followed session anyway
        self._follower.changed(trace_ids)
        if self._backoff.left() <= 0:
            self.nudge()
        else:
            self._follower.read_later()

    def _clock_stepped(self, step: float) -> None:
        """The wall clock jumped by `step` seconds: the job's next run, kept on the wall
        clock, moves with it, so it stays as far away in real time as it was."""
        log.warning("sync.clock_stepped", step_s=round(step, 1))
        if self.state.next_attempt_at is not None:
            self.state.next_attempt_at += step
        job = self._job
        if job is not None and self._scheduler is not None and job.next_run_time is not None:
            job.modify(next_run_time=job.next_run_time + timedelta(seconds=step))

    async def _tick(self) -> None:
        self._running = asyncio.current_task()
        self._rerun = False
        try:
            await self.sync_once()
        except StoreError as exc:
            if not exc.retryable:
                self._crash(exc)
            else:
                log.warning("sync.store_full" if exc.full else "sync.store_busy", error=str(exc))
        except Exception as exc:
            self._crash(exc)
        finally:
            self._running = None
        if self._rerun:
            self.nudge()

    def _crash(self, exc: BaseException) -> None:
        # APScheduler would only log it; a bug must stop the daemon so it is restarted.
        log.error("sync.crashed", exc_info=exc)
        if self._on_crash is not None:
            self._on_crash(exc)

    # ------------------------------------------------------------------------- runs

    async def sync_once(self, *, force: bool = False) -> Report:
        """One run: send until nothing is pending or the server says "not now". At most one
        run is in flight; `force` ignores a backoff (an explicit `tracesd sync`)."""
        async with self._lock:
            report = Report()
            if not force and self._backoff.left() > 0:
                report.skipped = True
            else:
                await self._drain(report)
            if report.sent or force:
                report.pending = (await self._outbox.counts()).pending
            return report

    async def _drain(self, report: Report) -> None:
        try:
            traces_sent = await self._send_pending(report)
            if self._follower is not None:
                # read whatever the server did (the queue holds what is read); send only
                # once the traces are through (a trace goes before its messages)
                await self._follower.read()
                if traces_sent:
                    await self._follow(report)
        finally:
            if self._unsaved:  # successes are saved once per run, failures at once
                await self._outbox.save_state(**self.state.dump())
                self._unsaved = False

    async def _follow(self, report: Report) -> None:
        """Messages follow the traces: send what is queued."""
        assert self._follower is not None
        match await self._follower.send():
            case KeyRefused(message):
                await self._failed(message, auth=True)
            case NotNow(message, retry_after):
                await self._failed(f"messages: {message}", retry_after=retry_after)
            case Sent(stored, refused):
                report.messages_stored += stored
                report.messages_refused += refused
                if stored:
                    self._succeeded()

    async def _send_pending(self, report: Report) -> bool:
        """Claim, send, record, batch after batch, until nothing is pending or the server
        says "not now" (then False). The database stays off the critical path: the next batch
        is claimed while one is on the wire, and sent before the answer to the one before is
        recorded. A run that stops still awaits and records the batch already sent."""
        sent = self._send(await self._claim(report, in_flight=set()), report)
        while sent is not None:
            claimed = await self._claim(report, in_flight=sent.ids)
            answer, duration_ms = await sent.answer
            # per-trace outcomes: the server takes traces, so the next batch goes now
            following = self._send(claimed, report) if isinstance(answer, list) else None
            if not await self._record(sent.batch, answer, duration_ms, report):
                if following is not None:
                    await self._record(following.batch, *await following.answer, report)
                return False
            self._succeeded()
            sent = following
        return True

    async def _claim(self, report: Report, *, in_flight: set[str]) -> Batch:
        """The next batch: pending traces not in flight, excluded ones failed and dropped."""
        while True:
            pending = await self._outbox.claim(self._config.batch_size, skip=in_flight)
            if not pending:
                return []
            pending = await self._drop_excluded(pending, report)
            if pending:
                return cut(pending, send_titles=self._config.send_titles)

    def _send(self, batch: Batch, report: Report) -> _OnTheWire | None:
        if not batch:
            return None
        report.sent += len(batch)
        return _OnTheWire(batch, asyncio.create_task(self._deliver([o for _, o in batch])))

    async def _deliver(self, items: list[Outgoing]) -> tuple[Delivered, float]:
        """What the server said, and how long it took (ms)."""
        started = time.monotonic()
        try:
            answer = await self._delivery.send(items)
        except Exception as exc:
            # The client turns every answer into outcomes (wire.py); should a bug let an
            # exception through, it costs a backoff, not the daemon: a restart would only
            # meet the same answer.
            log.error("sync.client_error", exc_info=exc)
            answer = NotNow(f"unexpected error in the client: {type(exc).__name__}")
        return answer, (time.monotonic() - started) * 1000

    async def _record(
        self, batch: Batch, answer: Delivered, duration_ms: float, report: Report
    ) -> bool:
        """Record what the server said about a batch; False when sync must back off."""
        match answer:
            case KeyRefused(message):
                await self._failed(message, auth=True)
                return False
            case NotNow(message, retry_after):
                await self._failed(message, retry_after=retry_after)
                return False
            case outcomes:
                return await self._record_each(batch, outcomes, duration_ms, report)

    async def _record_each(
        self, batch: Batch, outcomes: list[Outcome], duration_ms: float, report: Report
    ) -> bool:
        """Stored: the version sent is acknowledged. Refused: failed until it changes.
        Any other: pending, and sync backs off (paused, if the key was refused)."""
        stored: list[tuple[str, int]] = []
        refused: list[tuple[str, int, str]] = []
        later: list[NotNow | KeyRefused] = []
        for (pending, _), outcome in zip(batch, outcomes, strict=True):
            match outcome:
                case Stored():
                    stored.append((pending.trace.id, pending.version))
                case Refused(status, message):
                    refused.append((pending.trace.id, pending.version, outcome.reason))
                    log.warning(
                        "sync.trace_refused",
                        trace_id=pending.trace.id,
                        status=status,
                        error=message,
                    )
                case NotNow() | KeyRefused():
                    later.append(outcome)
        await self._outbox.ack(stored)
        await self._outbox.reject(refused)
        if self._follower is not None:
            self._follower.changed([trace_id for trace_id, _ in stored])
        report.succeeded += len(stored)
        report.failed += len(refused)
        log.info(
            "sync.batch",
            sent=len(batch),
            succeeded=len(stored),
            failed=len(refused),
            retry=len(later),
            duration_ms=round(duration_ms, 1),
            mode=self._delivery.mode,
        )
        if later:
            auth = any(isinstance(o, KeyRefused) for o in later)
            await self._failed(f"{len(later)} traces not stored: {later[0].message}", auth=auth)
            return False
        return True

    async def _drop_excluded(self, pending: list[Pending], report: Report) -> list[Pending]:
        """Traces captured before their directory was excluded are never sent."""
        excluded = [p for p in pending if p.trace.directory and self._excluded(p.trace.directory)]
        if excluded:
            await self._outbox.reject((p.trace.id, p.version, "excluded") for p in excluded)
            report.failed += len(excluded)
        return [p for p in pending if p not in excluded]

    # ---------------------------------------------------------------------- backoff

    async def _failed(
        self, error: str, *, retry_after: float | None = None, auth: bool = False
    ) -> None:
        state = self.state
        state.consecutive_failures += 1
        delay = self._backoff.fail(state.consecutive_failures, retry_after=retry_after, auth=auth)
        state.next_attempt_at = time.time() + delay
        state.last_error = error
        state.auth_paused = auth
        await self._outbox.save_state(**state.dump())
        self._unsaved = False
        if self._job is not None and self._scheduler is not None:
            self._job.modify(next_run_time=_at(state.next_attempt_at))
        log.warning(
            "sync.backoff" if not auth else "sync.paused_auth",
            error=error,
            failures=state.consecutive_failures,
            retry_in_s=round(delay, 2),
        )

    def _succeeded(self) -> None:
        state = self.state
        if state.consecutive_failures:
            log.info("sync.recovered", after_failures=state.consecutive_failures)
        state.consecutive_failures = 0
        state.next_attempt_at = None
        self._backoff.reset()
        state.last_error = None
        state.auth_paused = False
        state.last_success_at = time.time()
        self._unsaved = True


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)
