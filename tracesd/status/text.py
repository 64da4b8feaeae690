"""`tracesd status` as text: the status document in lines a person reads at a glance. A pure
function from the document to lines; `--json` prints the daemon's answer itself.

The document is first made terminal-safe as a whole (`terminal.value`): no field, present
or added later, reaches a terminal raw.
"""

from __future__ import annotations

import time

from tracesd import terminal
from tracesd.models import iso
from tracesd.status.document import AgentRoot, Status, SyncStatus, TracesCliStatus, WatcherStatus


def status(s: Status) -> list[str]:
    s = terminal.value(s)
    lines = [f"tracesd {s.version}, pid {s.pid}, up {_span(s.uptime_s)}  ({s.db_path})"]
    database = s.database
    if database.busy:
        since = iso(database.busy_since)
        lines.append(f"{'database':<9} busy: another program holds a write lock (since {since})")
    if database.full:
        since = iso(database.full_since)
        lines.append(f"{'database':<9} full: no space left for writes (since {since}); retrying")
    for moved in database.quarantined:
        lines.append(f"{'database':<9} a corrupt database was moved aside: {moved}")
    lines += _agents(s.agents)
    traces = s.traces
    parts = ", ".join(f"{a} {n}" for a, n in traces.by_agent.items())
    lines.append(f"{'traces':<9} {traces.total}" + (f" ({parts})" if parts else ""))
    capture = s.capture
    errors = ", ".join(f"{r} {n}" for r, n in capture.errors_by_reason.items())
    lines.append(
        f"{'capture':<9} {capture.captured_total} captured,"
        f" last {_ago(capture.last_capture_at)}; {capture.errors_total} errors"
        + (f" ({errors})" if errors else "")
    )
    refused = capture.refused_by_kind
    if refused:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(refused.items()))
        lines.append(
            f"{'':<9} {sum(refused.values())} special files refused unread ({kinds}):"
            " see the log's files.refused"
        )
    watcher = s.watcher
    watches = f", {watcher.watches} watches" if watcher.watches is not None else ""
    lines.append(
        f"{'watcher':<9} {watcher.roots_watched} roots{watches}, {watcher.overflows}"
        f" overflows, {watcher.rescans} scans"
        + (f"; degraded: {', '.join(watcher.degraded)}" if watcher.degraded else "")
    )
    if watcher.state == "degraded":
        lines.append(f"{'':<9} {_watcher_fault(watcher)}")
    lines += _sync(s.sync)
    if s.traces_cli is not None:
        lines.append(f"{'cli db':<9} {_traces_cli(s.traces_cli)}")
    return lines


def _traces_cli(cli: TracesCliStatus) -> str:
    """The Traces CLI's database, in one line."""
    if not cli.enabled:
        return "off ([traces_cli] enabled = false)"
    if cli.found is False:
        return f"{cli.path}: none yet"
    if cli.has_git_columns is False:
        return f"{cli.path}: no git columns (an older Traces CLI), left alone"
    line = f"{cli.path}: {cli.rows_enriched} rows given git context"
    return line + (f"; last error: {cli.last_error}" if cli.last_error else "")


def _watcher_fault(watcher: WatcherStatus) -> str:
    """DEGRADED, why, what to do, and when watching is tried again."""
    what = {
        "watch_limit": "the inotify watch limit is reached",
        "instance_limit": "the inotify instance limit is reached",
        "watcher_died": f"the watcher died ({watcher.error})",
    }.get(watcher.fault or "", f"watching failed ({watcher.error})")
    fix = f"; raise {watcher.sysctl}" if watcher.sysctl else ""
    retry = f"; retried {_when(watcher.next_retry_at)}" if watcher.next_retry_at else ""
    return f"DEGRADED: {what}{fix}; polling by rescans{retry}"


def _agents(roots: tuple[AgentRoot, ...]) -> list[str]:
    """Each root that exists, with its state; agents none of whose roots exist, in one line
    (most people use two or three of the nine)."""
    lines: list[str] = []
    present = {r.id for r in roots if r.exists}
    for root in (r for r in roots if r.exists):
        state = (
            "watching"
            if root.watching
            else f"degraded ({root.degraded}): polled by rescans"
            if root.degraded
            else "waiting for it to appear"
        )
        label = "agents" if not lines else ""
        lines.append(f"{label:<9} {root.id:<12} {root.root}  {state}")
    absent = [a for a in dict.fromkeys(r.id for r in roots) if a not in present]
    if absent:
        label = "agents" if not lines else ""
        lines.append(f"{label:<9} not found: {', '.join(absent)} (picked up when they appear)")
    return lines


def _sync(sync: SyncStatus) -> list[str]:
    if sync.activity is None:
        return [f"{'sync':<9} off ({sync.pending} traces would be sent; set [sync] api_url)"]
    head = (
        f"{'sync':<9} {sync.api_url}: {sync.pending} pending, {sync.failed} failed,"
        f" {sync.synced_total} synced; last success {_ago(sync.last_success_at)}"
    )
    lines = [head]
    m = sync.messages
    if m.enabled:
        line = (
            f"{'messages':<9} {m.followed} traces followed: {m.pending} pending,"
            f" {m.refused} refused, {m.sent_total} sent"
        )
        if m.oversized_total:
            line += f", {m.oversized_total} over the size limit (content replaced)"
        if m.unreadable:
            line += f"; {m.unreadable} sessions unreadable (see the log: follow.unreadable)"
        lines.append(line)
    if sync.activity.auth_paused:
        lines.append(f"{'':<9} PAUSED: the API key was refused; fix TRACES_API_KEY or api_key_file")
    if sync.last_error:
        retry = f" (next attempt {_when(sync.next_attempt_at)})" if sync.next_attempt_at else ""
        lines.append(f"{'':<9} last error: {sync.last_error}{retry}")
    for failure in sync.activity.failures[:5]:
        lines.append(f"{'':<9} refused: {failure.trace_id}: {failure.error}")
    return lines


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _ago(moment: float | None) -> str:
    if moment is None:
        return "never"
    return _span(time.time() - moment) + " ago"


def _when(moment: float) -> str:
    delta = moment - time.time()
    return f"in {_span(delta)}" if delta > 0 else "now"
