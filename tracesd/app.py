"""One wiring of the components, shared by the daemon and the one-shot commands.

`App.open(config, mode)` builds every component of the pipeline from the Config, each given
what it uses as constructor arguments (nothing is attached afterwards), in the order they
depend on each other:

    store -> [HTTP session, sync] -> Traces CLI bridge -> git -> ingest -> dispatcher -> scanner

and closes them in reverse when its block ends. The results of ingest and scans are added
up here (`counts`), and the traces stored are announced here (sync runs early, the bridge
fills them in). What the daemon adds around it (status socket, scheduler start, watcher,
periodic tasks, signals) is lifecycle, in daemon.py; `tracesd scan` runs one scan and one
bridge pass inside the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from tracesd.capture.adapters import Adapter, build_adapters
from tracesd.capture.counts import CaptureCounts
from tracesd.capture.debounce import Dispatcher
from tracesd.capture.ingest import Ingestor, Item, Result
from tracesd.capture.scan import Report, Scanner
from tracesd.config import Config
from tracesd.git.context import GitResolver
from tracesd.store import quarantine
from tracesd.store.database import Store
from tracesd.tracescli.bridge import Bridge

if TYPE_CHECKING:
    from tracesd.sync.job import SyncService

log = structlog.get_logger("tracesd.app")

Crash = Callable[[BaseException], None]


@dataclass(frozen=True, slots=True)
class Mode:
    """How the components run: as the daemon's, or for one command."""

    #: `PRAGMA quick_check` at open; a corrupt database is moved aside and replaced
    verify: bool
    #: a long-running process: sync is built when configured, and every trace stored is
    #: announced at once (a command fills the Traces CLI's database in one pass instead)
    live: bool
    cooldown_s: float
    #: a path read before that changes again waits up to this long, to share a batch
    gather_s: float
    workers: int
    #: how long running ingests may finish at close
    drain_s: float


DAEMON = Mode(verify=True, live=True, cooldown_s=0.25, gather_s=0.25, workers=4, drain_s=4.0)
COMMAND = Mode(verify=False, live=False, cooldown_s=0.0, gather_s=0.0, workers=8, drain_s=5.0)


class App:
    """The components of one tracesd process. Built by `App.open`."""

    def __init__(
        self,
        config: Config,
        mode: Mode,
        store: Store,
        *,
        directories: Sequence[str],
        sync: SyncService | None,
        on_crash: Crash | None,
    ) -> None:
        self.config = config
        self.store = store
        self.sync = sync
        self.counts = CaptureCounts()
        # The Traces CLI's database: filled with our git context in the background.
        self.bridge = Bridge(
            config,
            store,
            on_crash=on_crash,
            on_shared=sync.nudge if sync is not None else None,
        )
        self.git = GitResolver(timeout_s=config.capture.git_timeout_s, environ=config.environ)
        self.ingestor = Ingestor(
            store,
            self.git,
            exclude=config.capture.exclude,
            directories=directories,
            on_stored=self._stored if mode.live else None,
        )
        self.adapters: list[Adapter] = build_adapters(config)
        self.dispatcher = Dispatcher(
            self._ingest,
            cooldown_s=mode.cooldown_s,
            gather_s=mode.gather_s,
            workers=mode.workers,
            on_crash=on_crash,
        )
        self.scanner = Scanner(self.adapters, store, self.dispatcher)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, config: Config, mode: Mode, *, on_crash: Crash | None = None
    ) -> AsyncIterator[App]:
        """The components, open for the block; closed in reverse after it."""
        async with contextlib.AsyncExitStack() as stack:
            store = await Store.open(
                config.storage.db_path,
                verify=mode.verify,
                move_corrupt=mode.verify,
                legacy=config.storage.legacy_path,
            )
            stack.push_async_callback(store.close)
            if store.moved_aside is not None:
                log.error(
                    "store.quarantined",
                    path=str(store.path),
                    moved_to=str(store.moved_aside),
                    hint="the database was corrupt: a new one was created and is being rebuilt"
                    " from the session files; " + quarantine.recovery_hint(store.moved_aside),
                )
            sync = None
            if mode.live and config.sync.enabled:
                sync = _sync_service(config, store, stack, on_crash)
            app = cls(
                config,
                mode,
                store,
                directories=await store.directories(),
                sync=sync,
                on_crash=on_crash,
            )
            stack.push_async_callback(app.bridge.close)
            stack.push_async_callback(app.dispatcher.close, mode.drain_s)
            yield app

    async def scan(self, reason: str, roots: set[str] | None = None) -> Report:
        """Scan the agents' roots (all, or only `roots`) and ingest what changed."""
        report = await self.scanner.run(reason=reason, roots=roots)
        self.counts.unreadable_directories(report.unreadable)
        return report

    async def _ingest(self, items: Sequence[Item]) -> list[Result]:
        """The dispatcher's work: one batch through ingest, counted."""
        results = await self.ingestor.ingest_many(items)
        self.counts.add(results)
        if self.sync is not None:
            self.sync.changed([i for r in results for i in r.changed])
        return results

    def _stored(self, trace_ids: list[str]) -> None:
        """Traces were stored or changed: sync runs early, the bridge fills them in."""
        if self.sync is not None:
            self.sync.nudge()
        self.bridge.captured(trace_ids)


def _sync_service(
    config: Config, store: Store, stack: contextlib.AsyncExitStack, on_crash: Crash | None
) -> SyncService:
    # aiohttp and APScheduler are loaded only when sync is on (~13 MB of RSS otherwise).
    from tracesd.store.outbox import Outbox
    from tracesd.sync.client import BackendClient, aclose, open_session
    from tracesd.sync.job import SyncService

    if config.sync.scope == "shared" and not config.traces_cli.enabled:
        log.warning(
            "sync.scope_shared_without_cli",
            hint="[sync] scope = 'shared' sends the traces shared with the Traces CLI,"
            " known from its database: set [traces_cli] enabled = true, or scope = 'all'",
        )
    if not config.sync.api_key:
        log.warning(
            "sync.no_api_key",
            hint="set TRACES_API_KEY or [sync] api_key_file; sending without a key",
        )
    session = open_session()
    stack.push_async_callback(aclose, session)
    outbox = Outbox(store, scope=config.sync.scope)
    client = BackendClient(session, config.sync.api_url, config.sync.api_key)
    follower = None
    if config.sync.follows_messages:
        from tracesd.messages.readers.registry import READERS
        from tracesd.store.follow import FollowStore
        from tracesd.sync.follow import Follower

        readers = {a: r for a, r in READERS.items() if a in config.agents.enabled}
        follow = FollowStore(store, scope=config.sync.scope)
        follower = Follower(follow, outbox, client, readers, on_crash=on_crash)
    return SyncService(
        outbox,
        client,
        config.sync,
        exclude=config.capture.exclude,
        on_crash=on_crash,
        follower=follower,
    )
