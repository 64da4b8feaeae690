"""The status document as JSON (INTERFACE section 6), both ways: `as_json` for `GET /status`,
`parse` for the CLI that reads it back. Every key of the contract is named here and only
here (tests/test_status.py pins the set).

`parse` is defensive, because a daemon of another version may answer: a missing key, or a
value of the wrong type, reads as its empty value (0, None, false, nothing); keys it does
not know are ignored; a part it does not have at all (`traces_cli` from an older daemon)
is None. The text rendered from it then says less, never crashes. Times: ISO-8601 on the
wire, seconds since the epoch in the document (an unreadable time reads as None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tracesd.capture.scan import Report
from tracesd.models import iso
from tracesd.status.document import (
    AgentRoot,
    CaptureStatus,
    DatabaseStatus,
    GitStatus,
    MessagesStatus,
    Refusal,
    ScanStatus,
    Status,
    SyncActivity,
    SyncStatus,
    TracesCliStatus,
    TracesStatus,
    WatcherStatus,
)

# ------------------------------------------------------------------------------ to JSON


def as_json(s: Status) -> dict[str, Any]:
    """The document as `GET /status` answers it (key order as documented)."""
    answer: dict[str, Any] = {
        "version": s.version,
        "pid": s.pid,
        "uptime_s": s.uptime_s,
        "state": s.state,
        "degraded": list(s.degraded),
        "db_path": s.db_path,
        "socket_path": s.socket_path,
        "database": _database(s.database),
        "agents": [_agent(a) for a in s.agents],
        "traces": {"total": s.traces.total, "by_agent": dict(s.traces.by_agent)},
        "capture": _capture(s.capture),
        "git": {
            "lookups": s.git.lookups,
            "cache_hits": s.git.cache_hits,
            "timeouts": s.git.timeouts,
            "failures": s.git.failures,
        },
        "watcher": _watcher(s.watcher),
        "scan": {
            "running": s.scan.running,
            "last": s.scan.last.as_dict() if s.scan.last is not None else None,
        },
        "sync": _sync(s.sync),
    }
    if s.traces_cli is not None:
        answer["traces_cli"] = _traces_cli(s.traces_cli)
    return answer


def _database(d: DatabaseStatus) -> dict[str, Any]:
    return {
        "busy": d.busy,
        "busy_since": iso(d.busy_since),
        "busy_episodes": d.busy_episodes,
        "full": d.full,
        "full_since": iso(d.full_since),
        "full_episodes": d.full_episodes,
        "quarantined": list(d.quarantined),
    }


def _agent(a: AgentRoot) -> dict[str, Any]:
    return {
        "id": a.id,
        "root": a.root,
        "exists": a.exists,
        "watching": a.watching,
        "degraded": a.degraded,
    }


def _capture(c: CaptureStatus) -> dict[str, Any]:
    return {
        "captured_total": c.captured_total,
        "updated_total": c.updated_total,
        "errors_total": c.errors_total,
        "errors_by_reason": dict(c.errors_by_reason),
        "skipped_by_reason": dict(c.skipped_by_reason),
        "refused_by_kind": dict(c.refused_by_kind),
        "last_capture_at": iso(c.last_capture_at),
        "last_error": c.last_error,
    }


def _watcher(w: WatcherStatus) -> dict[str, Any]:
    return {
        "state": w.state,
        "fault": w.fault,
        "error": w.error,
        "sysctl": w.sysctl,
        "degraded_since": iso(w.degraded_since),
        "retries": w.retries,
        "next_retry_at": iso(w.next_retry_at),
        "failures_total": w.failures_total,
        "polled": list(w.polled),
        "roots_watched": w.roots_watched,
        "watches": w.watches,
        "events": w.events,
        "overflows": w.overflows,
        "backlogs": w.backlogs,
        "rescans": w.rescans,
        "handler_errors": w.handler_errors,
        "degraded": list(w.degraded),
    }


def _sync(s: SyncStatus) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "enabled": s.enabled,
        "api_url": s.api_url,
        "scope": s.scope,
        "pending": s.pending,
        "failed": s.failed,
        "synced_total": s.synced_total,
        "consecutive_failures": s.consecutive_failures,
        "last_success_at": iso(s.last_success_at),
        "last_error": s.last_error,
        "next_attempt_at": iso(s.next_attempt_at),
    }
    if (activity := s.activity) is not None:
        answer |= {
            "auth_paused": activity.auth_paused,
            "mode": activity.mode,
            "requests": activity.requests,
            "failures": [{"trace_id": f.trace_id, "error": f.error} for f in activity.failures],
        }
    m = s.messages
    answer["messages"] = {
        "enabled": m.enabled,
        "followed": m.followed,
        "pending": m.pending,
        "refused": m.refused,
        "sent_total": m.sent_total,
        "oversized_total": m.oversized_total,
        "unreadable": m.unreadable,
    }
    return answer


def _traces_cli(c: TracesCliStatus) -> dict[str, Any]:
    return {
        "enabled": c.enabled,
        "path": c.path,
        "found": c.found,
        "has_git_columns": c.has_git_columns,
        "rows_enriched": c.rows_enriched,
        "shares_copied": c.shares_copied,
        "passes": c.passes,
        "last_error": c.last_error,
        "busy": c.busy,
        "watching": list(c.watching),
    }


# ---------------------------------------------------------------------------- from JSON


def parse(answer: object) -> Status:
    """The document a daemon answered, of this version or another (see the module doc)."""
    s = _Part(answer)
    database, traces, capture = s.part("database"), s.part("traces"), s.part("capture")
    git, watcher, scan, sync = s.part("git"), s.part("watcher"), s.part("scan"), s.part("sync")
    return Status(
        version=s.text("version"),
        pid=s.integer("pid"),
        uptime_s=s.number("uptime_s"),
        state=s.text("state"),
        degraded=s.texts("degraded"),
        db_path=s.text("db_path"),
        socket_path=s.text("socket_path"),
        database=DatabaseStatus(
            busy=database.flag("busy"),
            busy_since=database.moment("busy_since"),
            busy_episodes=database.integer("busy_episodes"),
            full=database.flag("full"),
            full_since=database.moment("full_since"),
            full_episodes=database.integer("full_episodes"),
            quarantined=database.texts("quarantined"),
        ),
        agents=tuple(
            AgentRoot(
                id=a.text("id"),
                root=a.text("root"),
                exists=a.flag("exists"),
                watching=a.flag("watching"),
                degraded=a.maybe_text("degraded"),
            )
            for a in s.parts("agents")
        ),
        traces=TracesStatus(total=traces.integer("total"), by_agent=traces.counts("by_agent")),
        capture=CaptureStatus(
            captured_total=capture.integer("captured_total"),
            updated_total=capture.integer("updated_total"),
            errors_total=capture.integer("errors_total"),
            errors_by_reason=capture.counts("errors_by_reason"),
            skipped_by_reason=capture.counts("skipped_by_reason"),
            refused_by_kind=capture.counts("refused_by_kind"),
            last_capture_at=capture.moment("last_capture_at"),
            last_error=capture.maybe_text("last_error"),
        ),
        git=GitStatus(
            lookups=git.integer("lookups"),
            cache_hits=git.integer("cache_hits"),
            timeouts=git.integer("timeouts"),
            failures=git.integer("failures"),
        ),
        watcher=WatcherStatus(
            state=watcher.text("state"),
            fault=watcher.maybe_text("fault"),
            error=watcher.maybe_text("error"),
            sysctl=watcher.maybe_text("sysctl"),
            degraded_since=watcher.moment("degraded_since"),
            retries=watcher.integer("retries"),
            next_retry_at=watcher.moment("next_retry_at"),
            failures_total=watcher.integer("failures_total"),
            polled=watcher.texts("polled"),
            roots_watched=watcher.integer("roots_watched"),
            watches=watcher.maybe_integer("watches"),
            events=watcher.integer("events"),
            overflows=watcher.integer("overflows"),
            backlogs=watcher.integer("backlogs"),
            rescans=watcher.integer("rescans"),
            handler_errors=watcher.integer("handler_errors"),
            degraded=watcher.texts("degraded"),
        ),
        scan=ScanStatus(running=scan.flag("running"), last=_report(scan.get("last"))),
        sync=_parse_sync(sync),
        traces_cli=_parse_traces_cli(s.get("traces_cli")),
    )


def _report(value: object) -> Report | None:
    if not isinstance(value, Mapping):
        return None
    r = _Part(value)
    return Report(
        discovered=r.integer("discovered"),
        indexed=r.integer("indexed"),
        errors=r.integer("errors"),
        skipped=r.integer("skipped"),
        unchanged=r.integer("unchanged"),
        new=r.integer("new"),
        updated=r.integer("updated"),
        duration_s=r.number("duration_s"),
    )


def _parse_sync(s: _Part) -> SyncStatus:
    activity = (
        SyncActivity(
            auth_paused=s.flag("auth_paused"),
            mode=s.text("mode"),
            requests=s.integer("requests"),
            failures=tuple(
                Refusal(trace_id=f.text("trace_id"), error=f.text("error"))
                for f in s.parts("failures")
            ),
        )
        if s.flag("enabled")
        else None
    )
    return SyncStatus(
        api_url=s.maybe_text("api_url"),
        scope=s.text("scope"),
        pending=s.integer("pending"),
        failed=s.integer("failed"),
        synced_total=s.integer("synced_total"),
        consecutive_failures=s.integer("consecutive_failures"),
        last_success_at=s.moment("last_success_at"),
        last_error=s.maybe_text("last_error"),
        next_attempt_at=s.moment("next_attempt_at"),
        activity=activity,
        messages=_parse_messages(s.part("messages")),
    )


def _parse_messages(m: _Part) -> MessagesStatus:
    return MessagesStatus(
        enabled=m.flag("enabled"),
        followed=m.integer("followed"),
        pending=m.integer("pending"),
        refused=m.integer("refused"),
        sent_total=m.integer("sent_total"),
        oversized_total=m.integer("oversized_total"),
        unreadable=m.integer("unreadable"),
    )


def _parse_traces_cli(value: object) -> TracesCliStatus | None:
    if not isinstance(value, Mapping):
        return None
    c = _Part(value)
    return TracesCliStatus(
        enabled=c.flag("enabled"),
        path=c.text("path"),
        found=c.maybe_flag("found"),
        has_git_columns=c.maybe_flag("has_git_columns"),
        rows_enriched=c.integer("rows_enriched"),
        shares_copied=c.integer("shares_copied"),
        passes=c.integer("passes"),
        last_error=c.maybe_text("last_error"),
        busy=c.flag("busy"),
        watching=c.texts("watching"),
    )


class _Part:
    """One JSON object, read key by key: a missing key or a value of the wrong type reads
    as the empty value of the type asked for."""

    __slots__ = ("_values",)

    def __init__(self, value: object) -> None:
        self._values: Mapping[str, object] = value if isinstance(value, Mapping) else {}

    def get(self, key: str) -> object:
        return self._values.get(key)

    def part(self, key: str) -> _Part:
        return _Part(self._values.get(key))

    def parts(self, key: str) -> list[_Part]:
        items = self._values.get(key)
        return (
            [_Part(i) for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []
        )

    def text(self, key: str) -> str:
        return self.maybe_text(key) or ""

    def maybe_text(self, key: str) -> str | None:
        value = self._values.get(key)
        return value if isinstance(value, str) else None

    def texts(self, key: str) -> tuple[str, ...]:
        items = self._values.get(key)
        return tuple(i for i in items if isinstance(i, str)) if isinstance(items, list) else ()

    def flag(self, key: str) -> bool:
        return self._values.get(key) is True

    def maybe_flag(self, key: str) -> bool | None:
        value = self._values.get(key)
        return value if isinstance(value, bool) else None

    def integer(self, key: str) -> int:
        return self.maybe_integer(key) or 0

    def maybe_integer(self, key: str) -> int | None:
        value = self._values.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def number(self, key: str) -> float:
        value = self._values.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 0.0
        return float(value) if math.isfinite(value) else 0.0

    def counts(self, key: str) -> dict[str, int]:
        items = self._values.get(key)
        if not isinstance(items, Mapping):
            return {}
        return {
            k: v
            for k, v in items.items()
            if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        }

    def moment(self, key: str) -> float | None:
        value = self._values.get(key)
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
