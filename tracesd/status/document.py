"""The status document (`tracesd status`, INTERFACE section 6) as typed values: one frozen
dataclass per part. Each component contributes its part (the watcher `Watcher.status`, the
Traces CLI bridge `Bridge.status`, sync `SyncStatus.of`; the counters of the store, the
ingestor, git and the scanner are read by assemble.py, which builds the whole document
once per request). The same fields are then rendered three ways: JSON on the socket and
back (wire.py), the CLI's text (text.py) and Prometheus metrics (metrics.py).

Times are seconds since the epoch (None: never); the JSON shows them as ISO-8601.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracesd.capture.scan import Report
    from tracesd.config import SyncConfig
    from tracesd.store.outbox import Overview, SyncState


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """tracesd's own database: waiting writes (another program's lock, a full disk) and
    corrupt files moved aside."""

    busy: bool
    busy_since: float | None
    busy_episodes: int
    full: bool
    full_since: float | None
    full_episodes: int
    quarantined: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentRoot:
    """One directory an agent writes its sessions to."""

    id: str
    root: str
    exists: bool
    watching: bool
    #: why it is not (fully) watched although it exists; polled by rescans meanwhile
    degraded: str | None


@dataclass(frozen=True, slots=True)
class TracesStatus:
    total: int
    by_agent: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    captured_total: int
    updated_total: int
    errors_total: int
    errors_by_reason: Mapping[str, int]
    skipped_by_reason: Mapping[str, int]
    #: side files (workspace.json, .project_root, a repository's HEAD) that are a FIFO, a
    #: device, a socket or a directory: refused unread, once per path
    refused_by_kind: Mapping[str, int]
    last_capture_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class GitStatus:
    lookups: int
    cache_hits: int
    timeouts: int
    failures: int


@dataclass(frozen=True, slots=True)
class WatcherStatus:
    #: "ok", or "degraded" while a fault lasts (the roots are polled by rescans)
    state: str
    fault: str | None
    error: str | None
    sysctl: str | None
    degraded_since: float | None
    retries: int
    next_retry_at: float | None
    failures_total: int
    polled: tuple[str, ...]
    roots_watched: int
    #: kernel watches held for the roots; None where unknown
    watches: int | None
    events: int
    overflows: int
    backlogs: int
    rescans: int
    handler_errors: int
    degraded: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScanStatus:
    running: bool
    last: Report | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A trace the server refused for good (failed until it changes)."""

    trace_id: str
    error: str


@dataclass(frozen=True, slots=True)
class SyncActivity:
    """What only a running sync knows (absent when sync is off)."""

    auth_paused: bool
    #: "batch", or "single" against a server without the batch endpoint
    mode: str
    requests: int
    failures: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True)
class MessagesStatus:
    """Message follow (INTERFACE 7): the synced traces whose messages follow their session."""

    enabled: bool
    #: traces followed: in scope, on the server, of an agent whose messages tracesd reads
    followed: int = 0
    #: messages read and not yet acknowledged by the server
    pending: int = 0
    #: messages the server refused for good (kept until they change)
    refused: int = 0
    sent_total: int = 0
    #: messages whose content was replaced, being over the CLI's size limit
    oversized_total: int = 0
    #: followed traces whose session could not be read at the last attempt
    unreadable: int = 0


@dataclass(frozen=True, slots=True)
class SyncStatus:
    api_url: str | None
    scope: str
    pending: int
    failed: int
    synced_total: int
    consecutive_failures: int
    last_success_at: float | None
    last_error: str | None
    next_attempt_at: float | None
    activity: SyncActivity | None
    messages: MessagesStatus

    @property
    def enabled(self) -> bool:
        return self.activity is not None

    @classmethod
    def of(
        cls,
        config: SyncConfig,
        outbox: Overview,
        state: SyncState,
        activity: SyncActivity | None,
        messages: MessagesStatus | None = None,
    ) -> SyncStatus:
        """Sync on (`activity` from the running service) or off (a fresh `SyncState()`, no
        activity): traces pile up in the outbox either way; off shows how many would go."""
        counts = outbox.counts
        return cls(
            api_url=config.api_url if activity is not None else None,
            scope=config.scope,
            pending=counts.pending,
            failed=counts.failed,
            synced_total=counts.synced,
            consecutive_failures=state.consecutive_failures,
            last_success_at=state.last_success_at,
            last_error=state.last_error,
            next_attempt_at=state.next_attempt_at,
            activity=activity,
            messages=messages or MessagesStatus(enabled=False),
        )


@dataclass(frozen=True, slots=True)
class TracesCliStatus:
    """The Traces CLI's database (INTERFACE 5b), filled with our git context."""

    enabled: bool
    path: str
    #: None: not looked at yet
    found: bool | None
    has_git_columns: bool | None
    rows_enriched: int
    shares_copied: int
    passes: int
    last_error: str | None
    busy: bool
    watching: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Status:
    version: str
    pid: int
    uptime_s: float
    #: "ok", or "degraded": running, but a part works in a fallback mode (named in `degraded`)
    state: str
    degraded: tuple[str, ...]
    db_path: str
    socket_path: str
    database: DatabaseStatus
    agents: tuple[AgentRoot, ...]
    traces: TracesStatus
    capture: CaptureStatus
    git: GitStatus
    watcher: WatcherStatus
    scan: ScanStatus
    sync: SyncStatus
    #: always there from this version; None when a daemon that does not say answered
    traces_cli: TracesCliStatus | None
