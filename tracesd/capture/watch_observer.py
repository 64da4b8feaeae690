"""watchdog's observer, built so that its failures can be seen: the edge where the watcher
meets watchdog's threads and the kernel's inotify limits.

* `new_observer()`: on Linux, an inotify observer whose one inotify instance reports every
  watch the kernel refuses (ENOSPC: `fs.inotify.max_user_watches`). watchdog raises that
  only for a root; for a sub-directory, at start or created later, it swallows it, and the
  directory then goes silently unwatched. Creating the instance itself fails with EMFILE
  at `fs.inotify.max_user_instances`.
* `stop_observer()`: stop it, a dead or stalled one too (whether watching is alive is
  watch_liveness.py's concern).
* `OverflowHook`: watchdog 7 reports a kernel queue overflow only as a log record.
* `SessionEvents` and `EVENT_FILTER`: the event handler (on watchdog's thread) and the
  kernel mask it needs: never opened / closed-without-write, which would turn tracesd's own
  reads into events and livelock watchdog 7 at 100% CPU on trees of 5,000+ directories.
* `RetrySchedule`: when a failed watcher is tried again; `WatchCount`: the kernel's count of
  watches, cached.
* `SideWatches`: a few more directories (not recursive) watched through the same observer
  for another part of tracesd: the Traces CLI's database (bridge.py).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, ObservedWatch

try:  # Linux only: elsewhere (FSEvents, kqueue) the platform's Observer is used as is
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
    from watchdog.observers.inotify_c import InotifyFD
except (ImportError, OSError):  # pragma: no cover - not Linux
    InotifyObserver = None  # type: ignore[assignment,misc]

#: what a refused watch means, and the sysctl that lifts it
LIMIT_ERRNOS = {
    errno.ENOSPC: ("watch_limit", "fs.inotify.max_user_watches", 524288),
    errno.EMFILE: ("instance_limit", "fs.inotify.max_user_instances", 512),
}

OVERFLOW_LOGGER = "watchdog.observers.inotify_c"

#: what to do about a limit (LIMIT_ERRNOS names the sysctl and a value), or a dead watcher
LIMIT_HINT = (
    "raise it: `sudo sysctl {sysctl}={value}` (persist it in /etc/sysctl.d/90-tracesd.conf);"
    " until then the affected roots are polled by rescans and watching is retried"
)
DIED_HINT = (
    "watching stopped; the roots are polled by rescans until the watcher restarts"
    " (retried with backoff)"
)
#: how long a count of the kernel's watches is reused (status asks often)
WATCH_COUNT_TTL_S = 10.0

# Never FileOpenedEvent / FileClosedNoWriteEvent (see the module docstring). DirCreatedEvent
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
# No `module=`: the warning is attributed to the caller of add_callback, which is
# _ReportingInotifyFD here, not watchdog.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

log = structlog.get_logger("tracesd.watcher")

Refused = Callable[[OSError, bytes], None]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When a failed watcher is tried again: after `first_s`, doubling up to `max_s`
    (Syncthing's schedule). The daemon passes its own; tests pass a time-scaled one."""

    first_s: float = 60.0
    max_s: float = 3600.0

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row (1-based)."""
        return float(min(self.max_s, self.first_s * 2 ** max(0, failures - 1)))


def new_observer(on_refused: Refused) -> BaseObserver:
    """A started observer. Raises OSError (EMFILE at the instance limit)."""
    observer = (
        Observer()
        if InotifyObserver is None or Observer is not InotifyObserver
        else _ReportingInotifyObserver(on_refused)
    )
    observer.start()
    return observer


def stop_observer(observer: BaseObserver, timeout_s: float) -> bool:
    """Stop it (a dead one too: its survivors and watches are released); False when a
    thread did not end in time."""
    observer.stop()
    if observer.ident is not None:
        observer.join(timeout_s)
    return not observer.is_alive()


def stop_observer_later(observer: BaseObserver, timeout_s: float) -> None:
    """Stop it in a thread of its own: watchdog 7.1.1 joins a stalled dispatcher for 5 s."""

    def stop() -> None:
        try:
            if not stop_observer(observer, timeout_s):
                log.warning("watcher.stop_timeout", timeout_s=timeout_s)
        except Exception as exc:  # not a death of the next observer's threads: say it here
            log.warning("watcher.stop_failed", error=f"{type(exc).__name__}: {exc}")

    threading.Thread(target=stop, name="tracesd-observer-stop", daemon=True).start()


class OverflowHook(logging.Handler):
    """watchdog 7 reports a kernel queue overflow only as a log record; turn it into a call."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Inotify queue overflowed; filesystem events were lost"):
            self._callback()


class EventCounts(Protocol):
    events: int
    handler_errors: int


class SessionEvents(FileSystemEventHandler):
    """One root's events, on watchdog's thread: a file an adapter calls a session, the root
    itself deleted, a directory moved in (its files bring no events of their own). The
    callbacks must be thread-safe (the watcher hands them to the event loop)."""

    def __init__(
        self,
        root: str,
        matches: Callable[[str], bool],
        *,
        on_file: Callable[[str], None],
        on_root_deleted: Callable[[], None],
        on_dir_moved_in: Callable[[], None],
        stats: EventCounts,
    ) -> None:
        self._prefix = root.rstrip("/") + "/"
        self._matches = matches
        self._on_file = on_file
        self._on_root_deleted = on_root_deleted
        self._on_dir_moved_in = on_dir_moved_in
        self._stats = stats

    def dispatch(self, event: FileSystemEvent) -> None:
        # An exception here would kill watchdog's thread and silently end all watching
        # (watchdog #427): contain it at this thread boundary, loudly, and count it.
        try:
            self._handle(event)
        except Exception as exc:
            self._stats.handler_errors += 1
            log.error("watcher.handler_failed", event_type=event.event_type, exc_info=exc)

    def _handle(self, event: FileSystemEvent) -> None:
        self._stats.events += 1
        moved = event.event_type == "moved"
        path = os.fsdecode(event.dest_path if moved else event.src_path)
        if event.is_directory:
            if event.event_type == "deleted":
                if path.rstrip("/") == self._prefix.rstrip("/"):
                    self._on_root_deleted()
            elif moved and path.startswith(self._prefix):
                self._on_dir_moved_in()
            return
        if path.startswith(self._prefix) and self._matches(path[len(self._prefix) :]):
            self._on_file(path)


if InotifyObserver is not None:

    class _ReportingInotifyFD(InotifyFD):
        def __init__(self, on_refused: Refused) -> None:
            super().__init__()  # inotify_init(): EMFILE at the instance limit
            self._on_refused = on_refused

        def add_callback(self, path: bytes, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().add_callback(path, *args, **kwargs)
            except OSError as exc:
                if exc.errno in LIMIT_ERRNOS:
                    self._on_refused(exc, path)
                raise

    class _ReportingInotifyObserver(InotifyObserver):
        """InotifyObserver with the reporting instance (its own __init__, which builds a
        plain InotifyFD, is replaced by the same three steps)."""

        def __init__(self, on_refused: Refused) -> None:
            self._inotify_fd = _ReportingInotifyFD(on_refused)
            self._inotify_fd.start()
            BaseObserver.__init__(
                self, InotifyEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd
            )


#: side watches also see deletions (a database removed, or a legacy file that decided a path)
SIDE_EVENT_FILTER: list[type[FileSystemEvent]] = [*EVENT_FILTER, FileDeletedEvent]


class _SideEvents(FileSystemEventHandler):
    """On watchdog's thread: calls `on_event()` for an event on one of `paths`, and notes a
    watched directory that was deleted or moved away (watchdog stopped its emitter)."""

    def __init__(self, on_event: Callable[[], None]) -> None:
        super().__init__()
        self.paths: frozenset[str] = frozenset()
        self.watched: frozenset[str] = frozenset()
        self.gone: set[str] = set()
        self._on_event = on_event

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
            gone = event.is_directory and event.event_type in ("deleted", "moved")
            if gone and src in self.watched:  # replaced, never mutated
                self.gone.add(src)
            if src in self.paths or dest in self.paths:
                self._on_event()
        except Exception as exc:  # never kill watchdog's thread (watchdog #427)
            log.error("watcher.handler_failed", event_type=event.event_type, exc_info=exc)


class SideWatches:
    """Directories watched non-recursively through the watcher's observer, for a part of
    tracesd other than the agents' roots. `want()` (on the event loop) says which, and which
    paths in them matter; the watcher `attach()`es each observer it runs (every root check:
    a no-op when nothing changed) and `detach()`es one it drops. `on_event()` is called on
    watchdog's thread: it must be thread-safe."""

    def __init__(self, on_event: Callable[[], None]) -> None:
        self._handler = _SideEvents(on_event)
        self._on_event = on_event
        self._wanted: frozenset[str] = frozenset()
        self._armed: dict[str, ObservedWatch] = {}
        self._observer: BaseObserver | None = None
        self._failed: set[str] = set()

    @property
    def watched(self) -> list[str]:
        return sorted(self._armed)

    def want(self, directories: Iterable[str], paths: Iterable[str]) -> None:
        """Watch these directories (each one's events on `paths` only), from now on; a
        watched directory deleted since is watched anew (cheap when nothing changed)."""
        self._handler.paths = frozenset(paths)
        self._wanted = frozenset(directories)
        self._handler.watched = self._wanted
        self._sync()

    def attach(self, observer: BaseObserver) -> None:
        if observer is not self._observer:
            self._armed.clear()
            self._observer = observer
        self._sync()

    def detach(self) -> None:
        self._observer = None
        self._armed.clear()

    def _sync(self) -> None:
        observer = self._observer
        if observer is None:
            return
        gone = self._handler.gone
        while gone:  # its emitter stopped: unscheduled, so that it can be watched anew
            directory = gone.pop()
            if directory in self._armed:
                self._unschedule(observer, directory)
        for directory in set(self._armed) - self._wanted:
            self._unschedule(observer, directory)
        for directory in sorted(self._wanted - set(self._armed)):
            try:
                self._armed[directory] = observer.schedule(
                    self._handler, directory, recursive=False, event_filter=SIDE_EVENT_FILTER
                )
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # gone since the caller looked: it looks again
                    self._on_event()
                elif directory not in self._failed:  # once; retried at every root check
                    self._failed.add(directory)
                    log.warning("watcher.side_watch_failed", path=directory, error=exc.strerror)
                continue
            self._failed.discard(directory)

    def _unschedule(self, observer: BaseObserver, directory: str) -> None:
        try:
            observer.unschedule(self._armed.pop(directory))
        except (KeyError, OSError):
            log.debug("watcher.unschedule_failed", root=directory)


class WatchCount:
    """The kernel's count of this process's watches, kept for WATCH_COUNT_TTL_S: the kernel
    formats a line per watch, status is asked often, and this is a health number, not a
    correctness one."""

    def __init__(self) -> None:
        self._count: int | None = None
        self._counted_at = float("-inf")

    def __call__(self) -> int | None:
        now = time.monotonic()
        if now - self._counted_at >= WATCH_COUNT_TTL_S:
            self._counted_at = now
            self._count = count_watches()
        return self._count


def count_watches() -> int | None:
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
