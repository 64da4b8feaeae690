"""What `tracesd status` shows: one JSON document (INTERFACE section 6) built from the
running components. Reads are cheap (in-memory counters and one statement of indexed
counts on the store's reader connection), so answers stay fast during a big scan."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracesd import __version__
from tracesd.capture.counts import CaptureCounts
from tracesd.capture.scan import Scanner
from tracesd.capture.watch import Watcher
from tracesd.config import Config
from tracesd.git.context import GitResolver
from tracesd.models import iso
from tracesd.safeopen import REFUSED
from tracesd.store.database import Store
from tracesd.store.outbox import Counts, Outbox
from tracesd.tracescli.bridge import Bridge

if TYPE_CHECKING:
    from tracesd.sync.job import SyncService


@dataclass(slots=True)
class Parts:
    """The components a snapshot reads (all built by the daemon at startup)."""

    config: Config
    started_at: float
    store: Store
    capture: CaptureCounts
    git: GitResolver
    watcher: Watcher
    scanner: Scanner
    sync: SyncService | None
    bridge: Bridge


async def build(p: Parts) -> dict[str, Any]:
    outbox = await Outbox(p.store, scope=p.config.sync.scope).overview()
    by_agent = outbox.by_agent
    stats = p.capture
    watcher = p.watcher.stats
    degraded = ["watcher"] if p.watcher.degraded else []
    if p.store.busy_since is not None or p.store.full_since is not None:
        degraded.append("database")  # writes wait: captures are late, not lost
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(time.time() - p.started_at, 1),
        # "degraded": running, but a part works in a fallback mode (named in "degraded")
        "state": "degraded" if degraded else "ok",
        "degraded": degraded,
        "db_path": str(p.store.path),
        "socket_path": str(p.config.status.socket_path),
        "database": {
            "busy": p.store.busy_since is not None,
            "busy_since": iso(p.store.busy_since),
            "busy_episodes": p.store.busy_episodes,
            "full": p.store.full_since is not None,
            "full_since": iso(p.store.full_since),
            "full_episodes": p.store.full_episodes,
            "quarantined": [str(q) for q in p.store.quarantined],
        },
        "agents": [
            {
                "id": root.adapter.agent_id,
                "root": root.path,
                "exists": root.exists,
                "watching": root.watch is not None,
                "degraded": root.degraded,
            }
            for root in p.watcher.roots
        ],
        "traces": {"total": sum(by_agent.values()), "by_agent": by_agent},
        "capture": {
            "captured_total": stats.captured_total,
            "updated_total": stats.updated_total,
            "errors_total": stats.errors_total,
            "errors_by_reason": dict(stats.errors_by_reason),
            "skipped_by_reason": dict(stats.skipped_by_reason),
            # side files (workspace.json, .project_root, a repository's HEAD) that are a
            # FIFO, a device, a socket or a directory: refused unread, once per path
            "refused_by_kind": REFUSED.counts(),
            "last_capture_at": iso(stats.last_capture_at),
            "last_error": stats.last_error,
        },
        "git": {
            "lookups": p.git.lookups,
            "cache_hits": p.git.cache_hits,
            "timeouts": p.git.timeouts,
            "failures": p.git.failures,
        },
        "watcher": {
            "state": "degraded" if p.watcher.degraded else "ok",
            "fault": watcher.fault,
            "error": watcher.error,
            "sysctl": watcher.sysctl,
            "degraded_since": iso(watcher.degraded_since),
            "retries": watcher.retries,
            "next_retry_at": iso(watcher.next_retry_at),
            "failures_total": watcher.failures_total,
            "polled": p.watcher.polled(),
            "roots_watched": len(p.watcher.watched),
            "watches": p.watcher.watch_count(),
            "events": watcher.events,
            "overflows": watcher.overflows,
            "backlogs": watcher.backlogs,
            "rescans": p.scanner.scans,
            "handler_errors": watcher.handler_errors,
            "degraded": sorted(watcher.degraded),
        },
        "scan": {
            "running": p.scanner.running,
            "last": p.scanner.last_report.as_dict() if p.scanner.last_report else None,
        },
        "sync": p.sync.status(outbox)
        if p.sync is not None
        else _sync_off(outbox.counts, p.config.sync.scope),
        "traces_cli": p.bridge.status(),
    }


def _sync_off(counts: Counts, scope: str) -> dict[str, Any]:
    # Without sync, traces still pile up in the outbox; show how many would be sent.
    return {
        "enabled": False,
        "api_url": None,
        "scope": scope,
        "pending": counts.pending,
        "failed": counts.failed,
        "synced_total": counts.synced,
        "consecutive_failures": 0,
        "last_success_at": None,
        "last_error": None,
        "next_attempt_at": None,
    }


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
