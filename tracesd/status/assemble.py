"""The status document built from the running components, once per request: each part from
the component it describes (document.py names them). Reads are cheap (in-memory counters
and one statement of indexed counts on the store's reader connection), so answers stay fast
during a big scan."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracesd import __version__
from tracesd.safeopen import REFUSED
from tracesd.status.document import (
    CaptureStatus,
    DatabaseStatus,
    GitStatus,
    ScanStatus,
    Status,
    SyncStatus,
    TracesStatus,
)
from tracesd.store.outbox import Outbox, SyncState

if TYPE_CHECKING:
    from tracesd.capture.counts import CaptureCounts
    from tracesd.capture.scan import Scanner
    from tracesd.capture.watch import Watcher
    from tracesd.config import Config
    from tracesd.git.context import GitResolver
    from tracesd.store.database import Store
    from tracesd.sync.job import SyncService
    from tracesd.tracescli.bridge import Bridge


@dataclass(slots=True)
class Parts:
    """The components a status document reads (all built by the daemon at startup)."""

    config: Config
    started_at: float
    store: Store
    capture: CaptureCounts
    git: GitResolver
    watcher: Watcher
    scanner: Scanner
    sync: SyncService | None
    bridge: Bridge


async def build(p: Parts) -> Status:
    outbox = await Outbox(p.store, scope=p.config.sync.scope).overview()
    by_agent = outbox.by_agent
    degraded = ["watcher"] if p.watcher.degraded else []
    if p.store.busy_since is not None or p.store.full_since is not None:
        degraded.append("database")  # writes wait: captures are late, not lost
    return Status(
        version=__version__,
        pid=os.getpid(),
        uptime_s=round(time.time() - p.started_at, 1),
        state="degraded" if degraded else "ok",
        degraded=tuple(degraded),
        db_path=str(p.store.path),
        socket_path=str(p.config.status.socket_path),
        database=_database(p.store),
        agents=p.watcher.agents(),
        traces=TracesStatus(total=sum(by_agent.values()), by_agent=by_agent),
        capture=_capture(p.capture),
        git=_git(p.git),
        watcher=p.watcher.status(rescans=p.scanner.scans),
        scan=ScanStatus(running=p.scanner.running, last=p.scanner.last_report),
        sync=p.sync.status(outbox, await p.sync.messages())
        if p.sync is not None
        else SyncStatus.of(p.config.sync, outbox, SyncState(), None),
        traces_cli=p.bridge.status(),
    )


def _database(store: Store) -> DatabaseStatus:
    return DatabaseStatus(
        busy=store.busy_since is not None,
        busy_since=store.busy_since,
        busy_episodes=store.busy_episodes,
        full=store.full_since is not None,
        full_since=store.full_since,
        full_episodes=store.full_episodes,
        quarantined=tuple(str(q) for q in store.quarantined),
    )


def _capture(stats: CaptureCounts) -> CaptureStatus:
    return CaptureStatus(
        captured_total=stats.captured_total,
        updated_total=stats.updated_total,
        errors_total=stats.errors_total,
        errors_by_reason=dict(stats.errors_by_reason),
        skipped_by_reason=dict(stats.skipped_by_reason),
        refused_by_kind=REFUSED.counts(),
        last_capture_at=stats.last_capture_at,
        last_error=stats.last_error,
    )


def _git(git: GitResolver) -> GitStatus:
    return GitStatus(
        lookups=git.lookups,
        cache_hits=git.cache_hits,
        timeouts=git.timeouts,
        failures=git.failures,
    )


def summary_line(p: Parts) -> str:
    """One line for systemd's STATUS= (in-memory numbers only: no I/O)."""
    stats = p.capture
    line = (
        f"{stats.captured_total} captured, {stats.errors_total} errors, "
        f"watching {len(p.watcher.watched)} of {len(p.watcher.roots)} roots"
    )
    if p.watcher.degraded:
        line += f" (watcher degraded: {p.watcher.stats.fault}, polling)"
    if p.sync is not None:
        state = p.sync.state
        line += ", sync " + (
            "paused (API key refused)"
            if state.auth_paused
            else f"retrying ({state.consecutive_failures} failures)"
            if state.consecutive_failures
            else "ok"
        )
    return line
