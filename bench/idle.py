"""idle: the daemon watching 10,000 sessions in 5,000+ directories, with nothing happening.

The corpus is the scan benchmark's, with a third of the Claude Code sessions carrying
`<session>/subagents/` and `<session>/tool-results/` directories. Once the startup scan
has indexed everything, a window (60 s by default) measures the daemon's CPU (utime +
stime from /proc/<pid>/stat over wall time; 100% = one core), its RSS (VmRSS, sampled
every second), and that the database was not written: traces.db and its WAL keep their
size and mtime, and `PRAGMA data_version` on a connection opened before the window holds.

Floor, same window: a Python process that has imported everything the daemon imports
and then blocks -- the memory of the code itself, and the noise of the CPU measurement.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import clidb, harness, measure
from bench.corpus import Spec, agent_roots, build
from bench.harness import Daemon, Options, Workspace
from bench.report import Result, Row, at_most, fmt, percentile, spread
from bench.statusprobe import StatusProbe, status_latency_s

SESSIONS = 10_000
REPOS = 100
CPU_TARGET_PERCENT = 0.5
RSS_TARGET_MB = 80.0
#: reliability-research T15: status answers stay fast while a 10k-file backfill runs
STATUS_P99_TARGET_MS = 50.0
STARTUP_TIMEOUT_S = 600.0
_FLOOR_CODE = "import sys, tracesd.cli, tracesd.daemon; sys.stdin.read()"


@dataclass(slots=True)
class Window:
    seconds: float = 0.0
    cpu_percent: float = 0.0
    rss_max_mb: float = 0.0
    floor_cpu_percent: float = 0.0
    floor_rss_max_mb: float = 0.0
    #: daemon CPU per one-second sample, ms
    cpu_ms_per_second: list[float] = field(default_factory=list)
    db_files_before: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    db_files_after: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    data_version_before: int = 0
    data_version_after: int = 0
    log_events: dict[str, int] = field(default_factory=dict)

    @property
    def db_written(self) -> bool:
        return (
            self.db_files_before != self.db_files_after
            or self.data_version_before != self.data_version_after
        )


def run(options: Options) -> Result:
    result = Result("idle")
    with Workspace("idle") as ws:
        _, corpus = build(ws, "idle", REPOS, Spec(SESSIONS, options.seed))
        directories = measure.count_directories(agent_roots(ws.home))
        floor_argv = [sys.executable, "-c", _FLOOR_CODE]
        # The Traces CLI's database at its default path, holding every session without git
        # context: the bridge fills it at start, then watches it (and must stay idle).
        cli_path = ws.home / ".local" / "share" / "traces" / "traces.db"
        cli = clidb.create(cli_path, corpus.expected_rows())
        with (
            Daemon(ws.env, ws.root / "daemon.log") as daemon,
            subprocess.Popen(floor_argv, env=ws.env, stdin=subprocess.PIPE) as floor,
        ):
            harness.say("idle: waiting for the startup scan (asking for status meanwhile)")
            started = time.monotonic()
            socket_path = Path(ws.env["XDG_RUNTIME_DIR"]) / "tracesd" / "tracesd.sock"
            with StatusProbe(socket_path) as during_scan:
                scan = daemon.wait_for(
                    "scan.finished",
                    lambda e: e.get("reason") == "startup",
                    timeout_s=STARTUP_TIMEOUT_S,
                )
            startup_s = time.monotonic() - started
            when_idle = [status_latency_s(socket_path) for _ in range(50)]
            idle_ms = [s * 1000 for s in when_idle if s is not None]
            if floor.poll() is not None:
                raise measure.BenchError(f"the floor process exited ({floor.returncode})")
            watches = measure.inotify_watches(daemon.pid)
            cli_filled = _cli_filled(cli, SESSIONS)
            cli_settle_s = _settled(cli)
            harness.say(f"idle: measuring for {options.idle_window_s:g}s")
            before = len(daemon.events())
            cli_before = _db_files(cli)
            window = _observe(daemon.pid, floor.pid, ws.db, options.idle_window_s)
            cli_after = _db_files(cli)
            window.log_events = Counter(e["event"] for e in daemon.events()[before:])
            hwm_mb = measure.status_mb(daemon.pid, "VmHWM")
        wrong = harness.wrong_rows(ws.db, corpus.expected_rows())
        startup_ok = (scan["new"], scan["errors"]) == (SESSIONS, 0) and not wrong
        ws.keep = not startup_ok
        result.rows += [
            Row("corpus", f"{corpus.summary()}; {directories:,} directories under the roots"),
            Row(
                "startup scan",
                f"new={scan['new']} errors={scan['errors']} in {scan['duration_s']} s, "
                f"{SESSIONS - len(wrong):,} rows right",
                f"new={SESSIONS}, errors=0, every row right",
                passed=startup_ok,
            ),
            Row(
                "directories watched",
                f"{watches:,} inotify watches",
                f">= {directories:,} (directories under the roots)",
                passed=watches >= directories,
            ),
            Row(
                f"CPU over {window.seconds:.0f} s",
                fmt(window.cpu_percent, "%", 3),
                f"< {fmt(CPU_TARGET_PERCENT, '%', 3)}",
                f"{fmt(window.floor_cpu_percent, '%', 3)} (import-only python)",
                window.cpu_percent < CPU_TARGET_PERCENT,
            ),
            at_most(
                "RSS (max of 1 s samples)",
                window.rss_max_mb,
                RSS_TARGET_MB,
                "MB",
                floor=f"{fmt(window.floor_rss_max_mb, 'MB')} (import-only python)",
            ),
            Row("RSS peak incl. startup scan (VmHWM)", fmt(hwm_mb, "MB")),
            Row(
                f"GET /status during the startup scan (n={len(during_scan.samples_ms)}), ms",
                spread(during_scan.samples_ms),
                floor=f"idle daemon: {spread(idle_ms)}",
            ),
            at_most(
                "GET /status p99 during the startup scan",
                percentile(during_scan.samples_ms, 99),
                STATUS_P99_TARGET_MS,
                "ms",
                floor=f"idle p99 {fmt(percentile(idle_ms, 99), 'ms', 1)}",
            ),
            Row(
                "DB writes in window",
                _db_changes(window),
                "none",
                passed=not window.db_written,
            ),
            Row(
                "Traces CLI rows given git context (bridge on, before the window)",
                f"{cli_filled:,}/{SESSIONS:,}",
                f"{SESSIONS:,}/{SESSIONS:,}",
                passed=cli_filled == SESSIONS,
            ),
            Row(
                "Traces CLI database writes in window",
                f"written: {cli_before} -> {cli_after}" if cli_after != cli_before else "none",
                "none",
                f"the bridge's start passes settled {cli_settle_s:.1f} s before",
                passed=cli_after == cli_before,
            ),
            Row("log events in window", _events(window.log_events)),
        ]
        result.raw.update(
            corpus=corpus.describe(),
            directories=directories,
            inotify_watches=watches,
            startup_scan=scan,
            startup_wait_s=startup_s,
            wrong_rows=wrong[:20],
            vm_hwm_mb=hwm_mb,
            window=asdict(window),
            status_during_scan_ms=during_scan.samples_ms,
            status_idle_ms=idle_ms,
        )
    return result


def _observe(pid: int, floor_pid: int, db: Path, seconds: float) -> Window:
    """Sample the daemon (and the floor process) once a second for `seconds`."""
    window = Window()
    reader = harness.read_only(db)
    try:
        window.data_version_before = _data_version(reader)
        window.db_files_before = _db_files(db)
        cpu0, floor0 = measure.cpu_seconds(pid), measure.cpu_seconds(floor_pid)
        started = time.monotonic()
        last = cpu0
        for tick in range(1, max(1, round(seconds)) + 1):
            time.sleep(max(0.0, started + tick - time.monotonic()))  # pacing, not measuring
            now = measure.cpu_seconds(pid)
            window.cpu_ms_per_second.append((now - last) * 1000)
            last = now
            window.rss_max_mb = max(window.rss_max_mb, measure.status_mb(pid, "VmRSS"))
            floor_rss = measure.status_mb(floor_pid, "VmRSS")
            window.floor_rss_max_mb = max(window.floor_rss_max_mb, floor_rss)
        window.seconds = time.monotonic() - started
        window.cpu_percent = (measure.cpu_seconds(pid) - cpu0) / window.seconds * 100
        floor_cpu = measure.cpu_seconds(floor_pid) - floor0
        window.floor_cpu_percent = floor_cpu / window.seconds * 100
        window.db_files_after = _db_files(db)
        window.data_version_after = _data_version(reader)
    finally:
        reader.close()
    return window


def _cli_filled(path: Path, expected: int, timeout_s: float = 60.0) -> int:
    """The CLI's rows with branch and commit, once the bridge's start passes are done."""
    deadline = time.monotonic() + timeout_s
    while (count := clidb.filled(path)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def _settled(path: Path, quiet_s: float = 3.0, timeout_s: float = 60.0) -> float:
    """Seconds until the CLI's database and WAL stayed unchanged for `quiet_s` (the bridge's
    last pass closes its connection, and SQLite checkpoints the WAL, after its commit)."""
    started = last_change = time.monotonic()
    seen = _db_files(path)
    while time.monotonic() - last_change < quiet_s and time.monotonic() - started < timeout_s:
        time.sleep(0.1)
        now = _db_files(path)
        if now != seen:
            seen, last_change = now, time.monotonic()
    return last_change - started


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _db_files(db: Path) -> dict[str, tuple[int, int] | None]:
    """(size, mtime_ns) of the database and its WAL; None for a file that does not exist."""
    files: dict[str, tuple[int, int] | None] = {}
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            files[path.name] = None
        else:
            files[path.name] = (st.st_size, st.st_mtime_ns)
    return files


def _db_changes(window: Window) -> str:
    changes = [
        f"{name} {window.db_files_before[name]} -> {after}"
        for name, after in window.db_files_after.items()
        if window.db_files_before.get(name) != after
    ]
    if window.data_version_before != window.data_version_after:
        changes.append(f"data_version {window.data_version_before} -> {window.data_version_after}")
    return "; ".join(changes) or "none"


def _events(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items())) or "none"
