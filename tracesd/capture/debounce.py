"""From "this path changed" to ingest runs: immediate, coalesced, bounded.

A path that has not produced a trace lately is ingested at once, so a new session is in
the database within milliseconds. While a file keeps changing (an agent appending a turn
line by line) it is read at most once per cooldown, on the trailing edge, so a burst of
thousands of writes costs a handful of parses. A path that has stored a trace and changes
again (a session growing a line at a time, one of many) waits for the next gather tick:
every such path ready within `gather_s` is read in one batch, so 200 sessions appending at
once cost a few batches a second, not 200; a new path never waits, nor does one whose
reads have stored nothing yet (a first line still being written). A path is never
ingested twice at the same time, and a fixed pool of workers bounds how many run at once,
however many events arrive. A worker takes every ready path up to a batch size: one for a
live event, dozens during a scan, so the per-batch costs of ingest are shared.
When another writer holds the database past the busy timeout, the path is retried later
with backoff: nothing is dropped. So is a path whose agent holds its own store locked,
without making a scan wait for it. A scan's submission carries the file state the scan
read, and collects the results of the path's runs (the scan adds them up for its report).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from tracesd.capture.adapters import Adapter
from tracesd.capture.ingest import Item, Result, Tally
from tracesd.errors import StoreError

log = structlog.get_logger("tracesd.dispatch")

BUSY_RETRY_MAX_S = 30.0
BATCH = 64
#: paths remembered as having stored a trace (their next change waits for the gather tick);
#: the most recent only (a path forgotten is read at once, like a new one): a startup scan
#: of 10,000 sessions would otherwise hold 2 MB of paths in an idle daemon
KNOWN_MAX = 1024

IngestFn = Callable[[Sequence[Item]], Awaitable[list[Result]]]


@dataclass(slots=True)
class _Slot:
    adapter: Adapter
    running: bool = False
    queued: bool = False
    #: changed again while running: run once more when done
    dirty: bool = False
    #: loop time of the last run that stored something or found the file bad; the
    #: cooldown counts from here (a 100 MB line being written is not re-read per event)
    last_found: float = float("-inf")
    timer: asyncio.TimerHandle | None = None
    #: consecutive runs that found the database locked by another writer
    busy_retries: int = 0
    #: a scan's item for the next run (the file state it read), used once
    scanned: Item | None = None
    #: where the results of its runs are added until it settles (the scans waiting for it)
    sinks: tuple[Tally, ...] = ()


class Dispatcher:
    def __init__(
        self,
        ingest: IngestFn,
        *,
        cooldown_s: float = 0.25,
        gather_s: float = 0.0,
        workers: int = 4,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._ingest = ingest
        self._on_crash = on_crash
        self._cooldown = cooldown_s
        self._gather = gather_s
        self._slots: dict[str, _Slot] = {}
        self._ready: collections.deque[str] = collections.deque()
        #: paths read before, waiting for the gather tick (in arrival order)
        self._gathering: dict[str, None] = {}
        self._tick: asyncio.TimerHandle | None = None
        #: paths whose reads stored a trace, oldest first (bounded: KNOWN_MAX)
        self._known: dict[str, None] = {}
        self._timers = 0
        self._busy = 0
        self._closing = False
        #: the bug that killed a worker, re-raised by idle()
        self.crashed: BaseException | None = None
        self._wakeup = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._workers = [
            asyncio.create_task(self._work(), name=f"dispatch-{i}") for i in range(workers)
        ]
        for task in self._workers:
            task.add_done_callback(self._check_crash)

    @property
    def pending(self) -> int:
        """Paths queued, gathering, cooling down or running."""
        return len(self._ready) + len(self._gathering) + self._timers + self._busy

    def submit(self, adapter: Adapter, path: str) -> None:
        """Ingest `path` soon. Call from the event loop's thread."""
        if self._closing:
            return
        slot = self._slots.get(path)
        if slot is None:
            slot = self._slots[path] = _Slot(adapter)
        self._schedule(slot, path)

    def submit_scanned(self, item: Item, tally: Tally) -> None:
        """`submit` for a scan: the next run of the path reads `item` (with the file state
        the scan read), and each run's result is added to `tally` until the path settles
        (by the time `idle()` returns)."""
        if self._closing:
            return
        slot = self._slots.get(item.path)
        if slot is None:
            slot = self._slots[item.path] = _Slot(item.adapter)
        slot.scanned = item
        slot.sinks = (*slot.sinks, tally)
        self._schedule(slot, item.path, gather=False)

    def _schedule(self, slot: _Slot, path: str, *, gather: bool = True) -> None:
        if slot.running:
            slot.dirty = True
            return
        if slot.queued or slot.timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = slot.last_found + self._cooldown - loop.time()
        if wait > 0:
            self._later(slot, path, wait)
        elif gather and self._gather > 0 and path in self._known:
            self._gather_later(slot, path)
        else:
            self._enqueue(path)

    async def idle(self) -> None:
        """Wait until nothing is queued, cooling down or running. Raises the exception that
        killed a worker, so a waiter never waits on work no one will do."""
        while self.pending and self.crashed is None:
            self._settled.clear()
            await self._settled.wait()
        if self.crashed is not None:
            raise self.crashed

    async def close(self, grace_s: float) -> None:
        """Stop taking work; let running ingests finish for up to `grace_s`, then cancel.

        Paths still queued are not lost: their files differ from what the store last saw,
        so the next start's catch-up scan ingests them.
        """
        self._closing = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._gathering.clear()
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
        self._timers = 0
        self._ready.clear()
        self._wakeup.set()
        _, unfinished = await asyncio.wait(self._workers, timeout=grace_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.warning("dispatch.cancelled", running=len(unfinished))
        self._settled.set()

    # ------------------------------------------------------------------------ inside

    def _later(self, slot: _Slot, path: str, delay: float, *, counted: bool = True) -> None:
        """Enqueue `path` after `delay`. An uncounted wait is not pending work: idle() (and
        so a scan) does not wait for an agent that keeps its own store locked."""
        slot.timer = asyncio.get_running_loop().call_later(delay, self._fire, path, counted)
        self._timers += counted

    def _fire(self, path: str, counted: bool = True) -> None:
        self._timers -= counted
        slot = self._slots.get(path)
        if slot is not None:
            slot.timer = None
        self._enqueue(path)

    def _gather_later(self, slot: _Slot, path: str) -> None:
        """Queue `path` at the next gather tick, with every other path ready by then."""
        slot.queued = True  # waiting, like a queued path: neither scheduled again nor forgotten
        self._gathering[path] = None
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self._gather, self._gathered)

    def _gathered(self) -> None:
        self._tick = None
        paths, self._gathering = self._gathering, {}
        for path in paths:
            self._enqueue(path)

    def _enqueue(self, path: str) -> None:
        slot = self._slots.get(path)
        if slot is None or self._closing:
            return
        slot.queued = True
        self._ready.append(path)
        self._wakeup.set()

    async def _work(self) -> None:
        try:
            await self._take_batches()
        except Exception as exc:
            # Recorded before this task ends, so idle() cannot return as if all was done.
            self.crashed = self.crashed or exc
            self._settled.set()
            raise

    async def _take_batches(self) -> None:
        while not self._closing:
            if not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch: list[str] = []
            items: list[Item] = []
            while self._ready and len(batch) < BATCH:
                path = self._ready.popleft()
                slot = self._slots[path]
                slot.queued = False
                slot.running = True
                batch.append(path)
                items.append(slot.scanned or Item(slot.adapter, path))
                slot.scanned = None
            self._busy += len(batch)
            try:
                results = await self._ingest(items)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                self._retry_busy(batch, full=exc.full)
                continue
            finally:
                self._busy -= len(batch)
                for path in batch:
                    self._slots[path].running = False
                if not self.pending:
                    self._settled.set()
            for path, result in zip(batch, results, strict=True):
                self._done(path, result)

    def _retry_busy(self, batch: list[str], *, full: bool) -> None:
        # Another writer (the Traces CLI) held the database past the busy timeout, or the
        # disk is full: nothing was recorded for these paths, so read them again later.
        delay = 0.0
        for path in batch:
            delay = self._retry(self._slots[path], path, counted=True)
        event = "dispatch.store_full" if full else "dispatch.store_busy"
        log.warning(event, paths=len(batch), retry_in_s=delay)

    def _retry(self, slot: _Slot, path: str, *, counted: bool) -> float:
        """Try `path` again after a backoff (0.5 s doubling up to BUSY_RETRY_MAX_S)."""
        slot.busy_retries += 1
        slot.dirty = False  # the retry reads the file as it is then
        delay: float = min(BUSY_RETRY_MAX_S, 0.5 * 2**slot.busy_retries)
        self._later(slot, path, delay, counted=counted)
        return delay

    def _done(self, path: str, result: Result) -> None:
        loop = asyncio.get_running_loop()
        slot = self._slots[path]
        if slot.sinks:
            for sink in slot.sinks:
                sink.add(result)
            if result.retry or not slot.dirty:
                slot.sinks = ()  # settled (a retry of a locked store is waited for by none)
        if result.retry:
            # The agent holds its own store locked: read it again later, whatever else
            # happens meanwhile (its writes may well be the last events for a while).
            self._retry(slot, path, counted=False)
            return
        slot.busy_retries = 0
        if result.captured or result.updated or result.changed:
            self._remember(path)
        if result.captured or result.updated or result.error:
            slot.last_found = loop.time()
        if slot.dirty:
            slot.dirty = False
            self.submit(slot.adapter, path)
        elif slot.last_found + self._cooldown <= loop.time():
            del self._slots[path]  # nothing pending and out of cooldown: forget it
        else:
            loop.call_later(self._cooldown, self._forget, path)

    def _remember(self, path: str) -> None:
        known = self._known
        known.pop(path, None)
        known[path] = None
        if len(known) > KNOWN_MAX:
            del known[next(iter(known))]

    def _forget(self, path: str) -> None:
        slot = self._slots.get(path)
        if slot and not (slot.running or slot.queued or slot.dirty or slot.timer):
            del self._slots[path]

    def _check_crash(self, task: asyncio.Task[None]) -> None:
        # A bug, not bad input (ingest contains that): let the daemon fail loudly.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("dispatch.worker_crashed", exc_info=exc)
            if self._on_crash is not None:
                self._on_crash(exc)
