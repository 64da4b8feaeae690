"""Filesystem events -> paths for the dispatcher. The only module that touches watchdog.

One observer watches every enabled agent's roots (recursively, unless a root holds its
sessions directly). Its handler runs on watchdog's thread: it keeps only paths an adapter
says are sessions and hands them to the event loop with `call_soon_threadsafe`. Events
are hints, scans are the truth:

* the kernel mask leaves out opened / closed-without-write: with them, watchdog 7 turns
  our own reads into events and livelocks at 100% CPU on trees of 5,000+ directories;
* a queue overflow (watchdog 7 only logs it) triggers a full rescan;
* a root that does not exist yet, or is deleted and re-created, is picked up by a cheap
  periodic check and scanned;
* a root that cannot be watched (inotify limits) is polled by rescans instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from tracesd.adapters import Adapter

log = structlog.get_logger("tracesd.watcher")

# Never FileOpenedEvent / FileClosedNoWriteEvent (see module docstring). DirCreatedEvent
# must stay: without it watchdog stops covering new sub-directories (watchdog #990).
# DirDeletedEvent tells us the root itself went away (watchdog then stops its emitter).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
# watchdog re-registers a callback it already holds when its recursive walk meets a new
# directory twice, and warns about it; nothing is wrong, so do not let it reach the log.
warnings.filterwarnings(
    "ignore", message="Callback with id", category=RuntimeWarning, module="watchdog"
)
_OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
_LIMIT_HINT = (
    "inotify limit reached; raise it with "
    "`sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512` "
    "(persist in /etc/sysctl.d/90-tracesd.conf); falling back to periodic rescans"
)

PathCallback = Callable[[Adapter, str], None]
#: how long a count of the kernel's watches is reused (status asks often)
WATCH_COUNT_TTL_S = 10.0


@dataclass(slots=True)
class Root:
    adapter: Adapter
    path: str
    real: str = ""
    identity: tuple[int, int] | None = None
    watch: ObservedWatch | None = None
    #: why it is not watched although it exists ("limit", "error"), else None
    degraded: str | None = None

    @property
    def exists(self) -> bool:
        return self.identity is not None


@dataclass(slots=True)
class WatcherStats:
    overflows: int = 0
    events: int = 0
    handler_errors: int = 0
    degraded: set[str] = field(default_factory=set)


class Watcher:
    def __init__(
        self,
        adapters: list[Adapter],
        *,
        on_path: PathCallback,
        on_rescan: Callable[[str, list[str] | None], None],
    ) -> None:
        self.roots = [Root(a, r) for a in adapters for r in a.roots()]
        self._on_path = on_path
        self._on_rescan = on_rescan
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: BaseObserver | None = None
        self._overflow_hook = _OverflowHook(self._overflowed)
        self._watch_count: int | None = None
        self._counted_at = float("-inf")
        self.stats = WatcherStats()

    def start(self) -> None:
        """Start observing every root that exists; the others wait for `check_roots()`."""
        self._loop = asyncio.get_running_loop()
        logging.getLogger(_OVERFLOW_LOGGER).addHandler(self._overflow_hook)
        logging.getLogger(_OVERFLOW_LOGGER).setLevel(logging.WARNING)
        try:
            observer = Observer()
            observer.start()
        except OSError as exc:
            self._limit_reached(exc, "observer")
        else:
            self._observer = observer
        self.check_roots(initial=True)

    def stop(self, timeout_s: float = 3.0) -> None:
        logging.getLogger(_OVERFLOW_LOGGER).removeHandler(self._overflow_hook)
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout_s)
            if observer.is_alive():
                log.warning("watcher.stop_timeout", timeout_s=timeout_s)

    def watch_count(self) -> int | None:
        """Kernel watches this process holds (Linux: from /proc); None where unknown.

        The kernel formats a line per watch, so the count is kept for WATCH_COUNT_TTL_S:
        status is asked often, and this is a health number, not a correctness one.
        """
        now = time.monotonic()
        if now - self._counted_at >= WATCH_COUNT_TTL_S:
            self._counted_at = now
            self._watch_count = _count_watches()
        return self._watch_count

    @property
    def watched(self) -> list[Root]:
        return [r for r in self.roots if r.watch is not None]

    def check_roots(self, *, initial: bool = False) -> None:
        """Pick up roots that appeared, re-arm roots that were replaced. Cheap: stats only."""
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
        self.stats.degraded = {r.path for r in self.roots if r.degraded}

    def _watch(self, root: Root) -> None:
        if self._observer is None:
            root.degraded = "limit"
            return
        handler = _Handler(self, root)
        try:
            root.watch = self._observer.schedule(
                handler,
                root.real,
                recursive=root.adapter.depth(root.path) > 1,
                event_filter=EVENT_FILTER,
            )
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                self._limit_reached(exc, root.path)
                root.degraded = "limit"
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

    def _limit_reached(self, exc: OSError, where: str) -> None:
        log.error("watcher.limit_reached", where=where, error=exc.strerror, hint=_LIMIT_HINT)

    # -- called on watchdog's thread --------------------------------------------------

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


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: Root) -> None:
        self._watcher = watcher
        self._adapter = root.adapter
        self._prefix = root.real.rstrip("/") + "/"
        self._root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        # An exception here would kill watchdog's thread and silently end all watching
        # (watchdog #427): contain it at this thread boundary, loudly, and count it.
        try:
            self._handle(event)
        except Exception as exc:
            self._watcher.stats.handler_errors += 1
            log.error("watcher.handler_failed", event_type=event.event_type, exc_info=exc)

    def _handle(self, event: FileSystemEvent) -> None:
        watcher = self._watcher
        watcher.stats.events += 1
        moved = event.event_type == "moved"
        path = os.fsdecode(event.dest_path if moved else event.src_path)
        if event.is_directory:
            if event.event_type == "deleted":
                if path.rstrip("/") == self._prefix.rstrip("/"):
                    watcher._deliver(watcher._root_deleted, self._root)
            elif moved and path.startswith(self._prefix):
                # Files inside a directory moved in from elsewhere produce no events.
                watcher._deliver(watcher._on_rescan, "directory_moved", [self._root.path])
            return
        if not path.startswith(self._prefix):
            return
        if self._adapter.matches(path[len(self._prefix) :]):
            watcher._deliver(watcher._on_path, self._adapter, path)


class _OverflowHook(logging.Handler):
    """watchdog 7 reports a kernel queue overflow only as a log record; turn it into a call."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Inotify queue overflowed; filesystem events were lost"):
            self._callback()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


def _count_watches() -> int | None:
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
                count += sum(line.startswith(b"inotify wd:") for line in info)
        except OSError:
            continue  # closed meanwhile
    return count
