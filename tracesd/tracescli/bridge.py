"""The Traces CLI bridge in the daemon: when to fill the CLI's database with the git context
tracesd captured (tracescli.py says where the file is and how it is written), and what
status and the log say about it (INTERFACE 5b).

A pass reads the ids of the CLI's rows that lack a git column, looks them up in our
database, and fills what is NULL (never more); it also reads which rows the CLI shared and
copies that into our database (shares.py; `on_shared` is called when it changed). Passes
run in the background, one at a time, never on the capture path:

* at start, and after every scan of the daemon (startup, periodic, overflow, ...);
* after tracesd stores traces: their ids are collected, and one pass for all of them runs
  CAPTURE_DELAY_S later (only those rows are read);
* DEBOUNCE_S after an event on the CLI's file, its `-wal` or `-journal`, or a directory on
  the way to it (so a file created later, or a legacy `~/.traces/traces.db` that appears and
  becomes the CLI's file, is seen): its directory, or the nearest one that exists, is watched
  through the watcher's observer (observer.SideWatches). No polling: idle costs nothing.

Our own passes make events too (SQLite creates and removes `-wal` as it opens and closes a
WAL database; our writes change the file). A pass called only by events is skipped when
the file's signature (tracescli.signature) is what our last pass left. A pass that saw the
signature change under it (a CLI write meanwhile, or our own) is followed by one more, which
finds nothing to do when nobody else wrote.

When the CLI holds the lock the pass is retried after RETRY_FIRST_S, doubling to
RETRY_MAX_S (`traces_cli.busy` once per episode): at most about a second after the CLI lets
go (a retry's cost is one read of the ids; a write never waits more than a few ms).
Disabled: nothing here runs, and the CLI's file is never opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from tracesd.config import Config
from tracesd.errors import StoreCorrupt, StoreError
from tracesd.status.document import TracesCliStatus
from tracesd.store.database import Store
from tracesd.tracescli.database import (
    Busy,
    CliDbError,
    Connection,
    Filled,
    Missing,
    locate,
    signature,
    watched_files,
)
from tracesd.tracescli.shares import Copied, copy_shares

if TYPE_CHECKING:
    from tracesd.capture.watch_observer import SideWatches

log = structlog.get_logger("tracesd.traces_cli")
_T = TypeVar("_T")

#: how long requests (events on the CLI's file, scans) are collected before one pass
DEBOUNCE_S = 0.3
#: how long captures alone are collected (a burst of captures costs one pass a second)
CAPTURE_DELAY_S = 1.0
#: after a busy pass: the first retry, doubling up to the last (short: the 2 s promise)
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 1.0
#: `tracesd scan` gives a busy CLI this long before it leaves the file for the daemon
ONCE_BUDGET_S = 5.0


@dataclass(slots=True)
class _Work:
    #: read every row of the CLI's file (else only `ids`)
    full: bool = False
    ids: set[str] = field(default_factory=set)
    #: an event on the file: run unless the file is as our last pass left it
    event: bool = False

    def merge(self, other: _Work) -> None:
        self.full |= other.full
        self.ids |= other.ids
        self.event |= other.event


class Bridge:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        on_crash: Callable[[BaseException], None] | None = None,
        on_shared: Callable[[], None] | None = None,
    ) -> None:
        self._on_crash = on_crash
        self.enabled = config.traces_cli.enabled
        self._fixed = config.traces_cli.db_path
        self._environ = config.environ
        self._home = config.home
        self._own = config.storage.db_path
        self._store = store
        self.path = self._locate()
        #: None until looked at (and while disabled)
        self.found: bool | None = None
        self.has_git_columns: bool | None = None
        self.rows_enriched = 0
        #: our traces whose share state was copied from the CLI's file (set or cleared)
        self.shares_copied = 0
        #: called after a pass changed which traces are shared (sync runs soon)
        self._on_shared = on_shared
        #: passes that opened the file (status: at idle, this stays put)
        self.passes = 0
        self.last_error: str | None = None
        self._side: SideWatches | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event_queued = False
        self._work = _Work()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: the file's signature as our last pass left it
        self._seen: tuple[object, ...] | None = None
        self._planned: tuple[frozenset[str], frozenset[str]] | None = None
        #: busy passes in a row, and since when
        self._busy = 0
        self._busy_since: float | None = None

    @property
    def watch(self) -> SideWatches:
        """The directories watched for the CLI's file (the daemon's watcher attaches them).
        Built on first use: `tracesd scan` never loads watchdog."""
        if self._side is None:
            from tracesd.capture.watch_observer import SideWatches  # watchdog: the daemon only

            self._side = SideWatches(self._on_event_thread)
            if self._planned is not None:
                self._side.want(*self._planned)
        return self._side

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Watch the CLI's file and run the first pass (no-op when disabled)."""
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        self._plan()
        self._request(_Work(full=True))
        self._task = asyncio.create_task(self._run(), name="traces_cli")
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("traces_cli.crashed", exc_info=exc)
            if self._on_crash is not None:
                self._on_crash(exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def once(self) -> None:
        """One full pass now (`tracesd scan`), retrying a busy CLI for ONCE_BUDGET_S."""
        if not self.enabled:
            return
        deadline = time.monotonic() + ONCE_BUDGET_S
        while True:
            try:
                await self._pass(_Work(full=True))
                return
            except Busy as exc:
                self.rows_enriched += exc.rows
                self._note_busy(exc)
                if time.monotonic() >= deadline:
                    return
                await asyncio.sleep(self._retry_delay())
            except (CliDbError, StoreError) as exc:
                self._note_error(exc)
                return

    # -------------------------------------------------------------------- requests

    def captured(self, trace_ids: list[str]) -> None:
        """tracesd stored (or changed) these traces: fill them in soon (on the loop)."""
        if self.enabled and trace_ids:
            self._request(_Work(ids=set(trace_ids)))

    def rescanned(self) -> None:
        """A scan of the daemon finished: a full pass, if the CLI's file changed since our
        last one (what we captured meanwhile came through `captured()`)."""
        if self.enabled:
            self._request(_Work(event=True))

    def _request(self, work: _Work) -> None:
        self._work.merge(work)
        self._wake.set()

    def _on_event_thread(self) -> None:
        """An event on the CLI's file or its way (on watchdog's thread)."""
        loop = self._loop
        if loop is None or self._event_queued:
            return
        self._event_queued = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._on_event)

    def _on_event(self) -> None:
        self._event_queued = False
        self._request(_Work(event=True))

    # ----------------------------------------------------------------------- status

    def status(self) -> TracesCliStatus:
        return TracesCliStatus(
            enabled=self.enabled,
            path=str(self.path),
            found=self.found,
            has_git_columns=self.has_git_columns,
            rows_enriched=self.rows_enriched,
            shares_copied=self.shares_copied,
            passes=self.passes,
            last_error=self.last_error,
            busy=self._busy_since is not None,
            watching=tuple(self._side.watched) if self._side is not None else (),
        )

    # ----------------------------------------------------------------------- passes

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            soon = self._work.full or self._work.event
            await asyncio.sleep(
                self._retry_delay() if self._busy else DEBOUNCE_S if soon else CAPTURE_DELAY_S
            )
            self._wake.clear()
            work, self._work = self._work, _Work()
            try:
                again = await self._pass(work)
            except Busy as exc:
                self.rows_enriched += exc.rows  # committed before the CLI took the lock
                self._note_busy(exc)
                self._request(work)
                continue
            except StoreCorrupt:
                raise  # the daemon's to handle (it stops and moves the file aside)
            except (CliDbError, StoreError) as exc:
                self._note_error(exc)
                continue
            if again:
                self._request(_Work(full=True))

    async def _pass(self, work: _Work) -> bool:
        """Fill what we can; True when the file changed under this pass (look again)."""
        if self._plan():
            work.full = True
        path = self.path
        if _same_file(path, self._own):
            self.found, self.has_git_columns = True, None
            self._note_error(CliDbError(f"{path} is tracesd's own database: left alone"))
            return False
        before = await _in_thread(signature, path)
        if not (work.full or work.ids) and before == self._seen:
            return False  # only our own pass's events
        if before[0] is None:
            self._absent(before)
            return False
        try:
            conn = await _in_thread(Connection, path)
        except Missing:
            self._absent(await _in_thread(signature, path))
            return False
        self.found = True
        self.passes += 1
        started = time.monotonic()
        only = None if work.full or work.event else work.ids
        try:
            self.has_git_columns = await _in_thread(conn.has_git_columns)
            filled = Filled(0, 0, 0.0)
            if self.has_git_columns:
                lacking = await _in_thread(conn.lacking, only)
                ours = await self._store.git_rows(lacking) if lacking else []
                filled = await _in_thread(conn.fill, ours)
            theirs = await _in_thread(conn.shares, only)
        finally:
            await _in_thread(conn.close)
        copied = await copy_shares(self._store, theirs) if theirs else Copied()
        after = await _in_thread(signature, path)
        self._seen = after
        self._cleared()
        if filled.rows:
            self.rows_enriched += filled.rows
            log.info(
                "traces_cli.enriched",
                path=str(path),
                rows=filled.rows,
                statements=filled.statements,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                max_hold_ms=round(filled.max_hold_s * 1000, 2),
            )
        if copied.changed:
            self._shares_changed(copied)
        return after != before

    def _shares_changed(self, copied: Copied) -> None:
        self.shares_copied += copied.changed
        log.info("traces_cli.shares_copied", shared=copied.shared, unshared=copied.unshared)
        if self._on_shared is not None:
            self._on_shared()

    def _absent(self, seen: tuple[object, ...]) -> None:
        self.found, self.has_git_columns, self._seen = False, None, seen
        self._cleared()

    def _cleared(self) -> None:
        if self._busy_since is not None:
            log.info("traces_cli.busy_cleared", waited_s=round(time.time() - self._busy_since, 2))
        self._busy, self._busy_since = 0, None
        self.last_error = None

    def _note_busy(self, exc: Busy) -> None:
        self._busy += 1
        if self._busy_since is None:
            self._busy_since = time.time()
            log.info(
                "traces_cli.busy",
                path=str(self.path),
                retry_in_s=self._retry_delay(),
                hint="the Traces CLI holds its database's lock: tried again shortly",
            )
        self.last_error = str(exc)

    def _note_error(self, exc: Exception) -> None:
        message = str(exc)
        if message != self.last_error:
            log.warning("traces_cli.error", path=str(self.path), error=message)
        self.last_error = message
        self._busy, self._busy_since = 0, None

    def _retry_delay(self) -> float:
        return float(min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** max(0, self._busy - 1)))

    # ----------------------------------------------------------------------- where

    def _locate(self) -> Path:
        return self._fixed or locate(self._environ, self._home)

    def _plan(self) -> bool:
        """Locate the file again and watch what decides it; True when it moved."""
        path = self._locate()
        moved = path != self.path
        if moved:
            log.info("traces_cli.located", path=str(path), was=str(self.path))
            self.path, self._seen = path, None
        targets = (path,) if self._fixed else (*watched_files(self._environ, self._home), path)
        directories: set[str] = set()
        paths: set[str] = set()
        for target in targets:
            file = os.path.abspath(target)
            paths.update((file, file + "-wal", file + "-journal"))
            directory = os.path.dirname(file)
            while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
                paths.add(directory)  # not there yet: its creation is an event above it
                directory = os.path.dirname(directory)
            paths.add(directory)  # its deletion, too
            directories.add(directory)
        self._planned = (frozenset(directories), frozenset(paths))
        if self._side is not None:
            self._side.want(*self._planned)  # also re-arms a watched directory deleted since
        return moved


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)` in a worker thread. Cancelled meanwhile (the daemon stops), it
    still waits for the thread's statement to end (a few ms), so the connection is never
    closed under a running statement."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
