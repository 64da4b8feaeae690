"""The daemon: the lifecycle of the components (built in app.py), run until a signal.

Startup: the instance lock (one daemon per database) -> the status socket's checks ->
the components (store, migrated; HTTP session; bridge; git resolver; ingest; dispatcher;
scanner) -> sync's scheduler -> watcher (observing first, so nothing written during the
catch-up scan is missed) -> status socket -> catch-up scan -> periodic checks. Shutdown
unwinds the same stack: periodic tasks, status socket, watcher, sync, dispatcher (running
ingests get a bounded grace), store. SIGTERM or SIGINT stops gracefully; a second one
exits at once (SQLite's journal keeps the database consistent either way). SIGHUP is
logged and ignored (`daemon.sighup_ignored`): a closed terminal must not stop capture, and
the config is read at start only.

A corrupt database found at start is moved aside and replaced (the catch-up scan refills
it). One that SQLite reports corrupt while running stops the daemon: after the store is
closed it is moved aside and the process exits 1, so the service manager starts a fresh
process (every component rebuilt, nothing half-swapped) on a new database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from tracesd import __version__
from tracesd.app import DAEMON, App
from tracesd.capture.watch import Watcher
from tracesd.capture.watch_observer import RetrySchedule
from tracesd.config import Config
from tracesd.errors import StoreCorrupt, TracesdError
from tracesd.git.context import use_pidfd_child_watcher
from tracesd.service.notify import Notifier
from tracesd.status import assemble, metrics
from tracesd.status.document import Status
from tracesd.status.socket import StatusServer
from tracesd.store import quarantine, takeover
from tracesd.store.lock import InstanceLock

log = structlog.get_logger("tracesd.daemon")

#: roots appearing or replaced, and the liveness of watchdog's threads
ROOT_CHECK_INTERVAL_S = 2.0
#: a root that is not (fully) watched is rescanned this often
DEGRADED_POLL_INTERVAL_S = 30.0
#: a failed watcher is retried after 1 min, doubling to 60 min (Syncthing's schedule)
WATCHER_RETRY = RetrySchedule(first_s=60.0, max_s=3600.0)
# Stop budget (< 10 s in all): watcher join 2 s, in-flight sync 2 s, running ingests 4 s
# (app.DAEMON.drain_s).
WATCHER_STOP_S = 2.0
SYNC_GRACE_S = 2.0
#: how often an earlier database not yet taken over at start is tried again
TAKEOVER_RETRY_S = 10.0


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._signals = 0
        self._corrupt: StoreCorrupt | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_task: asyncio.Task[None] | None = None
        self._rescan_next: tuple[str, set[str] | None] | None = None
        # built by startup()
        self.app: App
        self.watcher: Watcher
        self.status: StatusServer
        self.notifier = Notifier(config.environ)

    async def serve(self) -> int:
        """Run until stopped; the process exit code."""
        use_pidfd_child_watcher()
        loop = asyncio.get_running_loop()
        # Before anything else: one daemon per database (AlreadyRunning: exit 1).
        lock = InstanceLock.acquire(self.config.storage.db_path)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            async with self._stack:
                await self.startup()
                await self._stop.wait()
                log.info("daemon.stopping", pid=os.getpid())
        except StoreCorrupt as exc:  # found by a read at startup, past the open checks
            self.fail(exc)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._corrupt is not None:  # still holding the lock: no successor reads it
                self._move_corrupt(self._corrupt)
            lock.release()
            loop.remove_signal_handler(signal.SIGHUP)
        log.info("daemon.stopped", exit_code=self._exit_code)
        return self._exit_code

    async def startup(self) -> None:
        config = self.config
        self.status = StatusServer(
            config.status.socket_path,
            home=config.home,
            document=self.status_document,
            sync_now=self._sync_now if config.sync.enabled else None,
            metrics=metrics.render,
        )
        await self.status.check_single_instance()  # before the store is touched
        self.app = app = await self._stack.enter_async_context(
            App.open(config, DAEMON, on_crash=self.fail)
        )
        if app.sync is not None:
            await app.sync.start()
            self._stack.push_async_callback(app.sync.close, SYNC_GRACE_S)

        self.watcher = Watcher(
            app.adapters,
            on_path=app.dispatcher.submit,
            on_rescan=self.request_rescan,
            retry=WATCHER_RETRY,
            side=app.bridge.watch,
        )
        self.watcher.start()
        self._stack.callback(self.watcher.stop, WATCHER_STOP_S)
        await self.status.start()
        self._stack.push_async_callback(self.status.close)
        self._stack.push_async_callback(self._cancel_tasks)

        # Everything loaded so far lives as long as the daemon: moved out of the collector's
        # sight, a full collection during a big scan stalls the loop for far less.
        gc.freeze()
        app.bridge.start()
        self.request_rescan("startup", None)
        self._every(ROOT_CHECK_INTERVAL_S, self._check_roots)
        self._every(config.capture.rescan_interval_s, self._safety_rescan)
        self._every(DEGRADED_POLL_INTERVAL_S, self._poll_degraded)
        if await asyncio.to_thread(takeover.waiting, config.storage.legacy_path):
            self._spawn(self._finish_takeover(), "takeover")
        # systemd: ready once the database, the socket and the watcher are up; then pings
        # from the event loop (a blocked loop stops them); STOPPING=1 first on the way out.
        parts = self._parts()
        self.notifier.ready(assemble.summary_line(parts))
        self._stack.callback(self.notifier.close)
        self._stack.callback(self.notifier.stopping)
        self._spawn(self.notifier.watchdog(lambda: assemble.summary_line(parts)), "watchdog")
        log.info(
            "daemon.started",
            version=__version__,
            pid=os.getpid(),
            db_path=str(app.store.path),
            agents=[a.agent_id for a in app.adapters],
            watching=[r.path for r in self.watcher.watched],
            waiting_for=[r.path for r in self.watcher.roots if not r.exists],
        )

    def _parts(self) -> assemble.Parts:
        app = self.app
        return assemble.Parts(
            config=self.config,
            started_at=self.started_at,
            store=app.store,
            capture=app.counts,
            git=app.git,
            watcher=self.watcher,
            scanner=app.scanner,
            sync=app.sync,
            bridge=app.bridge,
        )

    async def status_document(self) -> Status:
        """GET /status and /metrics."""
        return await assemble.build(self._parts())

    async def _sync_now(self) -> dict[str, Any]:
        """POST /sync: one run now, backoff or not."""
        assert self.app.sync is not None
        return (await self.app.sync.sync_once(force=True)).as_dict()

    def fail(self, exc: BaseException) -> None:
        """A component hit a bug: stop with a failure exit code so the service restarts."""
        if isinstance(exc, StoreCorrupt) and self._corrupt is None:
            self._corrupt = exc
            log.error(
                "store.corrupt",
                path=str(exc.path),
                error=exc.detail,
                hint="stopping: the database is moved aside and tracesd exits 1, so its"
                " service restarts it on a new database rebuilt from the session files",
            )
        self._exit_code = 1
        self._stop.set()

    def _move_corrupt(self, exc: StoreCorrupt) -> None:
        # SQLite said SQLITE_CORRUPT or SQLITE_NOTADB: never a mere lock, so it is moved.
        try:
            moved = quarantine.move_aside(exc.path)
        except OSError as err:
            log.error("store.quarantine_failed", path=str(exc.path), error=str(err))
            return
        log.error(
            "store.quarantined",
            path=str(exc.path),
            moved_to=str(moved),
            hint="the database was corrupt: the next start creates a new one and rebuilds it"
            " from the session files; " + quarantine.recovery_hint(moved),
        )

    def _on_sighup(self) -> None:
        # A terminal closing, or `kill -HUP` out of habit: never a reason to stop capturing.
        log.warning(
            "daemon.sighup_ignored",
            hint="tracesd keeps running: it logs to stderr (nothing to reopen) and reads its"
            " config at start; restart it to apply a config change"
            " (`systemctl --user restart tracesd`)",
        )

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon.forced_exit", signal=sig.name)
            os._exit(1)
        log.info("daemon.signal", signal=sig.name)
        self._stop.set()

    # ------------------------------------------------------------------------ scans

    def request_rescan(self, reason: str, roots: list[str] | None) -> None:
        """Scan now, or right after the running scan (requests meanwhile are merged)."""
        wanted = set(roots) if roots is not None else None
        if self._scan_task is not None and not self._scan_task.done():
            if self._rescan_next is None:
                self._rescan_next = (reason, wanted)
            else:
                prev_reason, prev = self._rescan_next
                merged = None if prev is None or wanted is None else prev | wanted
                self._rescan_next = (prev_reason, merged)
            return
        self._scan_task = asyncio.create_task(self._scan(reason, wanted), name="scan")
        self._scan_task.add_done_callback(self._task_done)

    async def _scan(self, reason: str, roots: set[str] | None) -> None:
        await self.app.scan(reason, roots)
        self.app.bridge.rescanned()
        if self._rescan_next is not None and not self._stop.is_set():
            reason, roots = self._rescan_next
            self._rescan_next = None
            self._scan_task = asyncio.create_task(self._scan(reason, roots), name="scan")
            self._scan_task.add_done_callback(self._task_done)

    def _check_roots(self) -> None:
        self.watcher.check_roots()

    def _safety_rescan(self) -> None:
        self.request_rescan("periodic", None)

    def _poll_degraded(self) -> None:
        degraded = self.watcher.polled()
        if degraded:
            self.request_rescan("degraded_poll", degraded)

    async def _finish_takeover(self) -> None:
        """An earlier database left at start (the Traces CLI held its lock, or an earlier
        daemon still ran on it): tried again until it is taken over. Runs only then."""
        legacy, db = self.config.storage.legacy_path, self.config.storage.db_path
        while await asyncio.to_thread(takeover.waiting, legacy) is not None:
            await asyncio.sleep(TAKEOVER_RETRY_S)
            try:
                await asyncio.to_thread(takeover.take_over, legacy, db)
            except TracesdError as exc:
                log.warning("store.takeover_failed", path=str(legacy), error=str(exc))

    # ------------------------------------------------------------------------ tasks

    def _every(self, interval_s: float, action: Callable[[], Awaitable[None] | None]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                result = action()
                if result is not None:
                    await result

        self._spawn(loop(), getattr(action, "__name__", "periodic"))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("daemon.task_failed", task=task.get_name(), exc_info=exc)
            self.fail(exc)

    async def _cancel_tasks(self) -> None:
        tasks = [*self._tasks, *([self._scan_task] if self._scan_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
