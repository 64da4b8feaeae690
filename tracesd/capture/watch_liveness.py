"""Is watching alive? watchdog's threads can die, or stall, without a word: `observer.is_alive()`
stays True when an emitter or the inotify reader has died (watchdog #648), and watchdog 7.1.1
added a dispatcher thread, reachable from nothing public, that ends the reader when it fails.
So liveness is judged by what the threads do, not by their names or watchdog's private
attributes, in two ways, both run with the watcher's root check (every 2 s):

* `ThreadErrors`, a `threading.excepthook`: any thread that dies of an exception raised in
  watchdog's code (whatever its class or name: found by the traceback) is reported, with
  the exception for the one log line; plus, through watchdog's public API, the observer
  and its emitters (one per root) that ended although nobody stopped them.
* `Canary`, end to end: a file in a private directory of ours (in $XDG_RUNTIME_DIR, a
  tmpfs: no disk write) is watched through the same observer and rewritten every
  `CANARY_EVERY` checks (10 s) at idle, at every check while events arrive; its event
  must come back within `CANARY_DEADLINE` checks (8 s). Whatever stops the shared
  pipeline (a thread that died quietly, one that hangs, a structure we never knew)
  shows as a canary that does not come back. Its watch is taken after the roots': at
  the watch limit, the canary is what goes without (thread deaths are still seen). Counted
  in checks, not seconds: a process stopped by SIGSTOP or a busy loop runs no checks,
  and is not declared dead for it. A late canary while other events still arrive is a
  backlog (watchdog 7.1.1 queues what the kernel gives it without bound): that is not
  death, but events arriving that late are dropped and the roots rescanned, so the
  queue's memory stays bounded: by what arrives in ~10 s (the caller decides; see
  watch.py). Before, the kernel's queue (16,384 events) overflowed instead.

Cost at idle: one 2-byte write every 10 s and a check of a few thread flags every 2 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import structlog
import watchdog
from watchdog.events import (
    FileClosedEvent,
    FileModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.utils import BaseThread

#: the canary is rewritten every this many root checks (2 s each in production) at idle,
#: at every check while events arrive
CANARY_EVERY = 5
#: its event must arrive within this many root checks after the write
CANARY_DEADLINE = 4

log = structlog.get_logger("tracesd.watcher")

_WATCHDOG_DIR = os.path.dirname(os.path.abspath(watchdog.__file__)) + os.sep

Kind = Literal["died", "stalled", "backlog"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Watching is not alive: a thread `died` (`threads`, `error`), the pipeline
    `stalled` (no event at all for the canary's deadline), or it is a `backlog` behind."""

    kind: Kind
    detail: str
    threads: tuple[str, ...] = ()
    error: BaseException | None = None

    def report(self, hint: str) -> None:
        """The one log line for a death or a stall (with the exception, if any)."""
        log.error(
            "watcher.observer_died",
            how=self.kind,
            threads=list(self.threads),
            error=self.detail,
            hint=hint,
            exc_info=self.error,
        )


def dead_threads(observer: BaseObserver) -> list[threading.Thread]:
    """The observer's threads reachable through watchdog's public API (the observer, one
    emitter per watch) that ended although nobody stopped them. An emitter whose root was
    deleted stops itself: not dead."""
    threads: list[BaseThread] = [observer, *list(observer.emitters)]
    return [
        t
        for t in threads
        if t.ident is not None and not t.is_alive() and not t.stopped_event.is_set()
    ]


def runs_watchdog(tb: TracebackType | None) -> bool:
    """Did this traceback pass through watchdog's code?"""
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_WATCHDOG_DIR):
            return True
        tb = tb.tb_next
    return False


class ThreadErrors:
    """While installed, the exception each of watchdog's threads died of; other threads'
    exceptions go to the previous hook."""

    def __init__(self) -> None:
        self.errors: dict[threading.Thread, BaseException] = {}
        self._previous: Callable[[threading.ExceptHookArgs], Any] | None = None

    def install(self) -> None:
        if self._previous is None:
            self._previous = threading.excepthook
            threading.excepthook = self._hook

    def uninstall(self) -> None:
        if self._previous is not None and threading.excepthook == self._hook:
            threading.excepthook = self._previous
        self._previous = None

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        ours = isinstance(args.thread, BaseThread) or runs_watchdog(args.exc_traceback)
        if ours and args.thread is not None and args.exc_value is not None:
            self.errors[args.thread] = args.exc_value
        elif self._previous is not None:
            self._previous(args)


class _CanaryEvents(FileSystemEventHandler):
    """The canary's handler, on watchdog's thread: only notes when an event came."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_at = float("-inf")

    def dispatch(self, event: FileSystemEvent) -> None:
        self.seen_at = time.monotonic()


class Canary:
    """A file of ours, watched through the observer, rewritten every `CANARY_EVERY` checks."""

    def __init__(self) -> None:
        self.every = CANARY_EVERY
        self.deadline = CANARY_DEADLINE
        self.dir: str | None = None
        self.watch: ObservedWatch | None = None
        self._events = _CanaryEvents()
        self._checks = 0
        #: while a write awaits its event: when it was written, checks since, progress then
        self._written_at: float | None = None
        self._waited = 0
        self._progress = 0
        #: progress at the previous check
        self._last = 0

    def attach(self, observer: BaseObserver) -> None:
        """Watch the canary through this (new) observer. OSError: no watch (a limit)."""
        if self.dir is None:
            base = os.environ.get("XDG_RUNTIME_DIR")
            self.dir = tempfile.mkdtemp(
                prefix="tracesd-canary-", dir=base if base and os.path.isdir(base) else None
            )
        self._written_at, self._checks = None, 0
        self.watch = None
        self.watch = observer.schedule(
            self._events,
            self.dir,
            recursive=False,
            event_filter=[FileModifiedEvent, FileClosedEvent],
        )

    def check(self, progress: int) -> Kind | None:
        """Once per root check. `progress`: a count of events delivered to our handlers."""
        if self.watch is None or self.dir is None:
            return None
        self._checks += 1
        busy, self._last = progress != self._last, progress
        if self._written_at is None:
            if busy or self._checks % self.every == 0:
                self._write(progress)
            return None
        if self._events.seen_at >= self._written_at:
            self._written_at = None
            return None
        self._waited += 1
        if self._waited < self.deadline:
            return None
        self._written_at = None
        return "backlog" if progress != self._progress else "stalled"

    def close(self) -> None:
        self.watch = None
        directory, self.dir = self.dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _write(self, progress: int) -> None:
        assert self.dir is not None
        self._written_at, self._waited, self._progress = time.monotonic(), 0, progress
        try:
            with open(os.path.join(self.dir, "beat"), "w") as f:
                f.write(f"{self._checks % 10}\n")
        except OSError:  # our directory went away (a tmp cleaner): a new one at the next check
            self._written_at, self.watch, self.dir = None, None, None


class Liveness:
    """Both checks, for the current observer."""

    def __init__(self) -> None:
        self.thread_errors = ThreadErrors()
        self.canary = Canary()
        self._retired: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def install(self) -> None:
        self.thread_errors.install()

    def uninstall(self) -> None:
        self.thread_errors.uninstall()
        self.canary.close()

    def detach(self) -> None:
        """The observer is being stopped: its threads (all alive now) may still die late,
        in the background; that is no news about the next observer."""
        self.thread_errors.errors.clear()
        self._retired.update(threading.enumerate())
        self.canary.watch = None

    def attach(self, observer: BaseObserver) -> None:
        """Send the canary through this observer, unless it already goes through it (at
        the watch limit it does not, until a check after the limit is raised)."""
        if self.canary.watch is None:
            with contextlib.suppress(OSError):
                self.canary.attach(observer)

    def check(self, observer: BaseObserver, progress: int) -> Verdict | None:
        """None while watching is alive (cheap: thread flags, a counter)."""
        errors = self.thread_errors.errors
        for thread in [t for t in errors if t in self._retired]:
            del errors[thread]
        dead = {t: None for t in [*errors, *dead_threads(observer)]}
        if dead:
            error = next((errors[t] for t in dead if t in errors), None)
            detail = f"{type(error).__name__}: {error}" if error else "thread ended"
            return Verdict("died", detail, tuple(t.name for t in dead), error)
        late = self.canary.check(progress)
        if late == "stalled":
            return Verdict(late, "no event came through the watcher (liveness canary)")
        if late == "backlog":
            return Verdict(late, "events arrive more than a deadline late (liveness canary)")
        return None
