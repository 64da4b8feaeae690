"""`GET /metrics`: the status document in the Prometheus text format, rendered by
prometheus-client (a collector built from one document per scrape: no state of its own).
Numbers and times are read from the document's typed fields as they are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from tracesd import __version__
from tracesd.status.document import Status


def render(status: Status) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Document(status))
    return generate_latest(registry)


class _Document(Collector):
    def __init__(self, status: Status) -> None:
        self._s = status

    def collect(self) -> Iterator[Any]:
        s = self._s
        yield InfoMetricFamily("tracesd", "tracesd build", value={"version": __version__})
        yield _gauge("tracesd_uptime_seconds", "Seconds since the daemon started.", s.uptime_s)

        traces = GaugeMetricFamily("tracesd_traces", "Traces in the database.", labels=["agent"])
        for agent, count in s.traces.by_agent.items():
            traces.add_metric([agent], count)
        yield traces

        capture = s.capture
        yield _counter(
            "tracesd_captured", "Traces stored for the first time.", capture.captured_total
        )
        yield _counter("tracesd_updated", "Changes to stored traces.", capture.updated_total)
        errors = CounterMetricFamily(
            "tracesd_capture_errors", "Session files that could not be read.", labels=["reason"]
        )
        for reason, count in capture.errors_by_reason.items():
            errors.add_metric([reason], count)
        yield errors
        refused = CounterMetricFamily(
            "tracesd_files_refused", "Special files refused unread, by kind.", labels=["kind"]
        )
        for kind, count in capture.refused_by_kind.items():
            refused.add_metric([kind], count)
        yield refused
        yield _gauge(
            "tracesd_last_capture_timestamp_seconds",
            "When a trace was last stored or changed.",
            capture.last_capture_at,
        )

        git = s.git
        yield _counter("tracesd_git_lookups", "Git context lookups.", git.lookups)
        yield _counter("tracesd_git_cache_hits", "Lookups answered by the cache.", git.cache_hits)
        yield _counter("tracesd_git_timeouts", "Lookups that hit the deadline.", git.timeouts)

        watcher = s.watcher
        yield _gauge("tracesd_watched_roots", "Agent roots being watched.", watcher.roots_watched)
        yield _counter(
            "tracesd_watch_overflows", "Kernel event queue overflows.", watcher.overflows
        )
        yield _counter(
            "tracesd_rescans", "Scans run (startup, overflow, periodic).", watcher.rescans
        )
        yield _gauge(
            "tracesd_degraded_roots",
            "Roots not watched (polled instead).",
            len(watcher.degraded),
        )

        sync = s.sync
        yield _gauge("tracesd_sync_enabled", "1 when sync is configured.", int(sync.enabled))
        if sync.enabled:
            yield _gauge("tracesd_sync_pending", "Traces waiting to be sent.", sync.pending)
            yield _gauge("tracesd_sync_failed", "Traces the server refused.", sync.failed)
            yield _gauge("tracesd_sync_synced", "Traces the server has.", sync.synced_total)
            yield _gauge(
                "tracesd_sync_consecutive_failures",
                "Failed attempts since the last success.",
                sync.consecutive_failures,
            )
            yield _gauge(
                "tracesd_sync_last_success_timestamp_seconds",
                "When a sync last succeeded.",
                sync.last_success_at,
            )
        m = sync.messages
        if m.enabled:
            yield _gauge("tracesd_messages_followed", "Traces whose messages follow.", m.followed)
            yield _gauge("tracesd_messages_pending", "Messages waiting to be sent.", m.pending)
            yield _gauge("tracesd_messages_refused", "Messages the server refused.", m.refused)
            yield _counter("tracesd_messages_sent", "Messages the server stored.", m.sent_total)
            yield _counter(
                "tracesd_messages_oversized",
                "Messages sent with their content replaced (over the size limit).",
                m.oversized_total,
            )
            yield _gauge(
                "tracesd_messages_unreadable",
                "Followed traces whose session could not be read.",
                m.unreadable,
            )


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float("nan") if value is None else value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
