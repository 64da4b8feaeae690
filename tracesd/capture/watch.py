"""Filesystem events -> paths for the dispatcher: which roots are watched, their health,
and what happens when watching fails. `observer` is the edge that meets watchdog.

One observer watches every enabled agent's roots (recursively, unless a root holds its
sessions directly). Its handler runs on watchdog's thread: it keeps only paths an adapter
says are sessions and hands them to the event loop with `call_soon_threadsafe`. Events
are hints, scans are the truth:

* the kernel mask leaves out opened / closed-without-write: with them, watchdog 7 turns
  our own reads into events and livelocks at 100% CPU on trees of 5,000+ directories;
* a queue overflow (watchdog 7 only logs it), or events coming through later than the
  liveness canary's deadline (a backlog in watchdog 7.1.1's unbounded queue: dropped with
  the observer, which is replaced, so memory stays bounded), triggers a full rescan;
* a root that does not exist yet, or is deleted and re-created, is picked up by a cheap
  periodic check and scanned;
* a root that cannot be watched, or only in part (an inotify limit, at start or for a
  directory created later), or whose watching died with one of watchdog's threads, is
  *degraded*: the daemon polls it by rescans, one log line says what happened (and which
  sysctl to raise), and the watcher is retried with backoff (1 min doubling to 60 min, as
  Syncthing does) until it works again. Whether watching is alive (a thread of watchdog's
  died, or nothing comes through at all) is checked with every root check (watch_liveness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from watchdog.observers.api import BaseObserver, ObservedWatch

from tracesd.capture.adapters import Adapter
from tracesd.capture.watch_liveness import Liveness
from tracesd.capture.watch_observer import (
    DIED_HINT,
    EVENT_FILTER,
    LIMIT_ERRNOS,
    LIMIT_HINT,
    OVERFLOW_LOGGER,
    OverflowHook,
    RetrySchedule,
    SessionEvents,
    SideWatches,
    WatchCount,
    new_observer,
    stop_observer,
    stop_observer_later,
)
from tracesd.status.document import AgentRoot, WatcherStatus

log = structlog.get_logger("tracesd.watcher")

PathCallback = Callable[[Adapter, str], None]
#: how long stopping a dead observer's survivors may take (in a thread of its own)
TEARDOWN_S = 6.0


@dataclass(slots=True)
class Root:
    adapter: Adapter
    path: str
    real: str = ""
    identity: tuple[int, int] | None = None
    watch: ObservedWatch | None = None
    #: why it is not (fully) watched although it exists ("limit", "error",
    #: "watcher_died"), else None; a degraded root is polled by rescans
    degraded: str | None = None

    @property
    def exists(self) -> bool:
        return self.identity is not None


@dataclass(slots=True)
class WatcherStats:
    overflows: int = 0
    #: times events came a canary's deadline late: dropped, the observer restarted, rescanned
    backlogs: int = 0
    events: int = 0
    handler_errors: int = 0
    degraded: set[str] = field(default_factory=set)
    #: the current failure ("watch_limit", "instance_limit", "watcher_died", "error")
    fault: str | None = None
    error: str | None = None
    #: the sysctl that lifts the current failure, if a limit
    sysctl: str | None = None
    #: wall-clock times
    degraded_since: float | None = None
    next_retry_at: float | None = None
    #: failed attempts to restart watching in the current failure
    retries: int = 0
    #: failures since start (each ended by a recovery or still going)
    failures_total: int = 0


class Watcher:
    def __init__(
        self,
        adapters: list[Adapter],
        *,
        on_path: PathCallback,
        on_rescan: Callable[[str, list[str] | None], None],
        retry: RetrySchedule | None = None,
        side: SideWatches | None = None,
    ) -> None:
        self.roots = [Root(a, r) for a in adapters for r in a.roots()]
        #: more directories watched through the same observer (the Traces CLI's database)
        self._side = side or SideWatches(lambda: None)
        self._on_path = on_path
        self._on_rescan = on_rescan
        self._retry = retry or RetrySchedule()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._observer: BaseObserver | None = None
        self._overflow_hook = OverflowHook(self._overflowed)
        self._liveness = Liveness()
        self._watch_count = WatchCount()
        #: monotonic time of the next attempt to restart watching, while degraded
        self._retry_at: float | None = None
        #: kinds of failure already logged in the current failure (one line each)
        self._reported: set[str] = set()
        self.stats = WatcherStats()

    @property
    def degraded(self) -> bool:
        return self.stats.fault is not None

    def start(self) -> None:
        """Start observing every root that exists; the others wait for `check_roots()`."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        logging.getLogger(OVERFLOW_LOGGER).addHandler(self._overflow_hook)
        logging.getLogger(OVERFLOW_LOGGER).setLevel(logging.WARNING)
        self._liveness.install()
        self._start_observer()
        self.check_roots(initial=True)

    def stop(self, timeout_s: float = 3.0) -> None:
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._overflow_hook)
        observer, self._observer = self._observer, None
        self._side.detach()
        if observer is not None and not stop_observer(observer, timeout_s):
            log.warning("watcher.stop_timeout", timeout_s=timeout_s)
        self._liveness.uninstall()

    def watch_count(self) -> int | None:
        """Kernel watches this process holds for the roots (Linux: from /proc, less the
        liveness canary's one); None where unknown."""
        count = self._watch_count()
        return count - 1 if count and self._liveness.canary.watch is not None else count

    @property
    def watched(self) -> list[Root]:
        return [r for r in self.roots if r.watch is not None]

    def polled(self) -> list[str]:
        """Roots that exist but are not fully watched: the daemon rescans them."""
        return [r.path for r in self.roots if r.exists and (r.watch is None or r.degraded)]

    def agents(self) -> tuple[AgentRoot, ...]:
        """Every root of every agent, as status shows it."""
        return tuple(
            AgentRoot(
                id=root.adapter.agent_id,
                root=root.path,
                exists=root.exists,
                watching=root.watch is not None,
                degraded=root.degraded,
            )
            for root in self.roots
        )

    def status(self, *, rescans: int) -> WatcherStatus:
        """The watcher's part of status; `rescans`: the scans it asked for (and the others)."""
        stats = self.stats
        return WatcherStatus(
            state="degraded" if self.degraded else "ok",
            fault=stats.fault,
            error=stats.error,
            sysctl=stats.sysctl,
            degraded_since=stats.degraded_since,
            retries=stats.retries,
            next_retry_at=stats.next_retry_at,
            failures_total=stats.failures_total,
            polled=tuple(self.polled()),
            roots_watched=len(self.watched),
            watches=self.watch_count(),
            events=stats.events,
            overflows=stats.overflows,
            backlogs=stats.backlogs,
            rescans=rescans,
            handler_errors=stats.handler_errors,
            degraded=tuple(sorted(stats.degraded)),
        )

    def check_roots(self, *, initial: bool = False) -> None:
        """Pick up roots that appeared, re-arm roots that were replaced, check that
        watching is alive, retry a failed watcher when its time has come. Cheap:
        stats and thread flags, unless a retry is due."""
        self._check_alive()
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._try_again()
        for root in self.roots:
            identity = _identity(root.path)
            if identity == root.identity and (root.watch is not None or root.degraded):
                continue
            if identity != root.identity:
                self._unwatch(root)
                root.identity = identity
                root.real = os.path.realpath(root.path) if identity else ""
                root.degraded = None
                if identity is not None and not initial:
                    log.info("watcher.root_appeared", agent=root.adapter.agent_id, root=root.path)
                    self._on_rescan("root_appeared", [root.path])
            if identity is not None:
                self._watch(root)
        if self._observer is not None:
            self._liveness.attach(self._observer)  # after the roots (see watch_liveness.py)
            self._side.attach(self._observer)
        self._refresh()

    def _start_observer(self) -> bool:
        try:
            self._observer = new_observer(self._refused)
        except OSError as exc:
            self._fail(exc, [r for r in self.roots if r.exists], "observer")
            return False
        return True

    def _watch(self, root: Root) -> None:
        if self._observer is None:
            root.degraded = _root_reason(self.stats.fault)
            return
        handler = SessionEvents(
            root.real,
            root.adapter.matches,
            on_file=lambda path: self._deliver(self._on_path, root.adapter, path),
            on_root_deleted=lambda: self._deliver(self._root_deleted, root),
            on_dir_moved_in=lambda: self._deliver(self._on_rescan, "directory_moved", [root.path]),
            stats=self.stats,
        )
        try:
            root.watch = self._observer.schedule(
                handler,
                root.real,
                recursive=root.adapter.depth(root.path) > 1,
                event_filter=EVENT_FILTER,
            )
        except OSError as exc:
            if exc.errno in LIMIT_ERRNOS:
                self._fail(exc, [root], root.path)
            elif exc.errno == errno.ENOENT:
                root.identity = None  # vanished between stat and watch: next check retries
            else:
                log.error("watcher.watch_failed", root=root.path, error=exc.strerror)
                root.degraded = "error"
            return
        log.info("watcher.watching", agent=root.adapter.agent_id, root=root.path, real=root.real)

    def _unwatch(self, root: Root) -> None:
        watch, root.watch = root.watch, None
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                log.debug("watcher.unschedule_failed", root=root.path)

    def _refresh(self) -> None:
        self.stats.degraded = {r.path for r in self.roots if r.degraded}

    # -- failure, retry, recovery (on the event loop) -------------------------------

    def _fail(self, exc: OSError | None, roots: Iterable[Root], where: str) -> None:
        """Watching failed for `roots`: they are polled from now on. The first failure
        of a kind logs one actionable line (not one per root) and schedules a retry."""
        if exc is None:
            kind, sysctl, value = "watcher_died", None, 0
        else:
            kind, sysctl, value = LIMIT_ERRNOS.get(exc.errno or 0, ("error", None, 0))
        affected = [r for r in roots if r.exists]
        for root in affected:
            root.degraded = _root_reason(kind)
        stats = self.stats
        started = stats.fault is None
        stats.fault, stats.sysctl = kind, sysctl
        stats.error = exc.strerror if exc is not None else stats.error
        if started:
            stats.degraded_since = time.time()
            stats.retries = 0
            stats.failures_total += 1
            self._schedule_retry()
        paths = [r.path for r in affected]
        if kind not in self._reported:
            self._reported.add(kind)
            if sysctl is not None:
                log.error(
                    "watcher.limit_reached",
                    sysctl=sysctl,
                    where=where,
                    error=stats.error,
                    roots=paths,
                    hint=LIMIT_HINT.format(sysctl=sysctl, value=value),
                )
            elif kind != "watcher_died":
                log.error("watcher.failed", where=where, error=stats.error, roots=paths)
        else:
            log.debug("watcher.still_degraded", fault=kind, where=where, roots=paths)
        self._refresh()
        if started and where != "observer":
            # Events may have been lost already (a directory went unwatched): poll now.
            # (No observer at all happens at start, or in a retry: a scan follows anyway.)
            self._on_rescan("watcher_degraded", paths or None)

    def _schedule_retry(self) -> None:
        delay = self._retry.delay(self.stats.retries + 1)
        self._retry_at = time.monotonic() + delay
        self.stats.next_retry_at = time.time() + delay

    def _try_again(self) -> None:
        """Rebuild what failed: the observer when it is gone, the watch of every root
        that is degraded. Back to normal, or the next retry twice as late."""
        self._retry_at = None
        affected = [r for r in self.roots if r.degraded and r.exists]
        if self._observer is None and not self._start_observer():
            return self._retry_failed()
        for root in affected:
            self._unwatch(root)
            root.degraded = None
            self._watch(root)
        self._refresh()
        if any(r.degraded for r in self.roots) or self._observer is None:
            return self._retry_failed()
        stats = self.stats
        log.info(
            "watcher.recovered",
            fault=stats.fault,
            retries=stats.retries,
            degraded_s=round(time.time() - (stats.degraded_since or time.time()), 1),
            roots=[r.path for r in affected],
        )
        stats.fault = stats.error = stats.sysctl = None
        stats.degraded_since = stats.next_retry_at = None
        stats.retries = 0
        self._reported.clear()
        # What was written between the last poll and the new watches: scan it now.
        self._on_rescan("watcher_recovered", [r.path for r in affected] or None)

    def _retry_failed(self) -> None:
        self.stats.retries += 1
        self._schedule_retry()
        log.info(
            "watcher.retry_failed",
            fault=self.stats.fault,
            retries=self.stats.retries,
            next_retry_s=self._retry.delay(self.stats.retries + 1),
        )

    def _check_alive(self) -> None:
        observer = self._observer
        verdict = None if observer is None else self._liveness.check(observer, self.stats.events)
        if observer is None or verdict is None:
            return
        self._observer = None
        self._liveness.detach()
        self._side.detach()
        for root in self.roots:
            root.watch = None
        stop_observer_later(observer, TEARDOWN_S)
        if verdict.kind == "backlog":
            self.stats.backlogs += 1
            log.warning("watcher.backlog", backlogs=self.stats.backlogs, error=verdict.detail)
            if self._start_observer():
                for root in [r for r in self.roots if r.exists and not r.degraded]:
                    self._watch(root)
            return self._on_rescan("backlog", None)
        self.stats.error = verdict.detail
        if "watcher_died" not in self._reported:
            verdict.report(DIED_HINT)
        self._fail(None, self.roots, "thread")

    # -- called on watchdog's thread --------------------------------------------------

    def _refused(self, exc: OSError, path: bytes) -> None:
        """The kernel refused a watch (any thread): watchdog raises that for a root but
        swallows it for a sub-directory, which would go unwatched without a word."""
        if threading.get_ident() == self._loop_thread:
            self._refused_on_loop(exc, path)
        else:
            self._deliver(self._refused_on_loop, exc, path)

    def _refused_on_loop(self, exc: OSError, path: bytes) -> None:
        where = os.fsdecode(path)
        for root in self.roots:
            if root.real and (where == root.real or where.startswith(root.real.rstrip("/") + "/")):
                self._fail(exc, [root], where)
                return

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed while this event was in flight; a scan covers it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _root_deleted(self, root: Root) -> None:
        # watchdog stopped this root's emitter; forget the watch and look again now, so
        # `rm -rf root && mkdir root` (same inode number, often) is re-armed at once.
        log.info("watcher.root_deleted", agent=root.adapter.agent_id, root=root.path)
        self._unwatch(root)
        root.identity = None
        self.check_roots()

    def _overflowed(self) -> None:
        self._deliver(self._overflow_on_loop)

    def _overflow_on_loop(self) -> None:
        self.stats.overflows += 1
        log.warning("watcher.overflow", overflows=self.stats.overflows)
        self._on_rescan("overflow", None)


def _root_reason(fault: str | None) -> str:
    """A root's `degraded` for a watcher failure (status shows it per root)."""
    return {"watch_limit": "limit", "instance_limit": "limit"}.get(fault or "", fault or "error")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None
