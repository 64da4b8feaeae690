"""Fault injection for the watcher (issue 6, parts 2 and 3; targets T7 and T12).

Every test drives a real `tracesd run` process. Event storm: the daemon is frozen with
SIGSTOP while 20,000 sessions are written, so the kernel's inotify queue overflows for
real. Watcher failures: the inotify limits are real kernel limits, lowered for the
daemon alone in a user namespace of its own (`unshare -Ur`, then raised again from the
outside with `nsenter`); only the death of watchdog's threads is injected, by a
sitecustomize.py on the daemon's PYTHONPATH that makes one of those threads raise (the
real thing cannot be provoked on demand). The same sitecustomize time-scales the daemon:
polling and the watcher's retry backoff run in seconds instead of minutes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, isolated_env, make_repo, query, tracesd, write_atomic

StartDaemon = Callable[..., Daemon]

STORM_FILES = 20_000
STORM_APPENDS = 100
STORM_DEADLINE_S = 15.0
#: generous: 72 MB measured with watchdog 7.1.1 (45 MB at idle)
STORM_PEAK_RSS_MB = 250.0


def _session_lines(session_id: str, cwd: Path, prompt: str) -> str:
    line = {
        "type": "user",
        "cwd": str(cwd),
        "sessionId": session_id,
        "message": {"role": "user", "content": prompt},
        "timestamp": "2026-11-28T10:00:00.000Z",
    }
    return json.dumps(line) + "\n"


def _assistant_line(session_id: str, cwd: Path, text: str) -> str:
    line = {
        "type": "assistant",
        "cwd": str(cwd),
        "sessionId": session_id,
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "timestamp": "2026-11-28T10:05:00.000Z",
    }
    return json.dumps(line) + "\n"


def _project_dir(home: Path, cwd: Path) -> Path:
    return home / ".claude" / "projects" / str(cwd).replace("/", "-").replace(".", "-")


def status_json(home: Path) -> dict[str, Any]:
    result = tracesd(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_event_storm_while_stopped_is_fully_captured_within_15s(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """T7. Pass: the daemon is SIGSTOPped while 20,000 new session files are written (in
    200 new project directories) and 100 existing sessions get a line appended; within
    15 s of SIGCONT every new session and every append is in SQLite exactly once (20,100
    rows, each append's text in its row), `tracesd status --json` shows
    watcher.overflows >= 1 and an `overflow` rescan is logged (the kernel's queue still
    overflows: watchdog's reader, which drains it into an unbounded queue since 7.1.1, is
    stopped too), and the daemon's peak RSS stays under 250 MB."""
    repos = [make_repo(tmp_path / f"repo{i}") for i in range(4)]
    existing: list[tuple[str, Path, Path]] = []
    for i in range(STORM_APPENDS):
        cwd = repos[i % len(repos)] / f"pkg{i}"
        cwd.mkdir()
        sid = str(uuid.uuid4())
        project = _project_dir(home, cwd)
        project.mkdir(parents=True, exist_ok=True)
        path = project / f"{sid}.jsonl"
        path.write_text(_session_lines(sid, cwd, f"existing {i}"))
        existing.append((sid, path, cwd))
    daemon = daemons(home)
    daemon.wait_ready()
    assert len(query(daemon.db, "SELECT id FROM traces")) == STORM_APPENDS

    daemon.signal(signal.SIGSTOP)
    try:
        created: dict[str, Path] = {}
        for _, existing_path, cwd in existing:
            project = existing_path.parent  # watched: every file is an event, the queue overflows
            for _ in range(STORM_FILES // len(existing)):
                sid = str(uuid.uuid4())
                path = project / f"{sid}.jsonl"
                with path.open("w") as f:
                    f.write(_session_lines(sid, cwd, f"storm {sid}"))
                created[sid] = path
        for sid, path, cwd in existing:
            with path.open("a") as f:
                f.write(_assistant_line(sid, cwd, f"appended to {sid}"))
    finally:
        daemon.signal(signal.SIGCONT)
    resumed = time.monotonic()

    expected_total = STORM_FILES + STORM_APPENDS
    appended = {sid for sid, _, _ in existing}
    captured_at: float | None = None
    while time.monotonic() - resumed < STORM_DEADLINE_S:
        rows = query(daemon.db, "SELECT COUNT(*) AS n FROM traces")[0]["n"]
        if rows >= expected_total:
            done = query(
                daemon.db,
                "SELECT COUNT(*) AS n FROM traces WHERE preview LIKE 'appended to %'",
            )[0]["n"]
            if done == len(appended):
                captured_at = time.monotonic() - resumed
                break
        assert daemon.proc.poll() is None, daemon.log_path.read_text()
        time.sleep(0.1)
    rows_now = query(daemon.db, "SELECT id, source_path, preview FROM traces")
    assert captured_at is not None, (
        f"{len(rows_now)} of {expected_total} rows after {STORM_DEADLINE_S}s"
    )
    peak_mb = peak_rss_mb(daemon.proc.pid)
    print(f"\nstorm: {expected_total} sessions captured {captured_at:.2f}s after SIGCONT")
    print(f"storm: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < STORM_PEAK_RSS_MB  # watchdog 7.1.1 queues without bound: it must not

    by_id = {r["id"]: r for r in rows_now}
    assert len(rows_now) == len(by_id) == expected_total  # exactly once
    for sid, path in created.items():
        assert by_id[sid]["source_path"] == str(path)
    for sid in appended:
        assert by_id[sid]["preview"] == f"appended to {sid}"

    status = status_json(home)
    assert status["watcher"]["overflows"] >= 1
    assert daemon.events("watcher.overflow")
    assert [e for e in daemon.events("scan.finished") if e["reason"] == "overflow"]
    assert daemon.stop() == 0


# ------------------------------------------------------------------ watcher failures

#: time-scaled for the tests (production: 2 s, 30 s, and 60 s doubling to 3600 s)
ROOT_CHECK_S = 0.5
POLL_S = 1.0
#: the liveness canary, in root checks (production: written every 5, due within 4)
CANARY_EVERY = 2
CANARY_DEADLINE = 4
#: inotify events a second the "slow" dispatcher handles
SLOW_RATE = 200

SITECUSTOMIZE = '''\
"""Written by tests/test_fault_watcher.py into a temp dir on the daemon's PYTHONPATH:
time-scales the daemon and, with TRACESD_TEST_FAULT, makes one watchdog thread die."""
import os

import tracesd.daemon
from tracesd.capture.watch_observer import RetrySchedule

first, cap = (float(x) for x in os.environ["TRACESD_TEST_RETRY"].split(","))
tracesd.daemon.ROOT_CHECK_INTERVAL_S = {root_check}
tracesd.daemon.DEGRADED_POLL_INTERVAL_S = {poll}
tracesd.daemon.WATCHER_RETRY = RetrySchedule(first_s=first, max_s=cap)
try:
    import tracesd.capture.watch_liveness
except ImportError:  # the code before the liveness canary
    pass
else:
    tracesd.capture.watch_liveness.CANARY_EVERY = {canary_every}
    tracesd.capture.watch_liveness.CANARY_DEADLINE = {canary_deadline}

FAULT = os.environ.get("TRACESD_TEST_FAULT", "")
TRIGGER = "die-now"
fired = []


def die(where):
    fired.append(where)
    raise RuntimeError(f"injected fault: the {{where}} thread dies")


# Each fault strikes whichever thread does one job, found by what it runs (a public method
# of watchdog's API, or os.read on an inotify fd), never by a thread's name or class.
if FAULT == "emitter":  # the thread that turns one root's inotify events into watchdog's
    from watchdog.observers.api import EventEmitter

    queue_event = EventEmitter.queue_event

    def queue_event_or_die(self, event):
        if not fired and TRIGGER in str(event.src_path):
            die("emitter")
        return queue_event(self, event)

    EventEmitter.queue_event = queue_event_or_die
elif FAULT == "reader":  # the thread that reads the kernel's inotify queue
    read = os.read

    def read_or_die(fd, n):
        data = read(fd, n)
        if not fired and TRIGGER.encode() in data:
            if os.readlink(f"/proc/self/fd/{{fd}}") == "anon_inode:inotify":
                die("inotify reader")
        return data

    os.read = read_or_die
elif FAULT in ("dispatcher", "stalled"):  # the thread that hands inotify events to the
    # watches (the reader up to watchdog 7.1.0, its own "InotifyFD-Dispatcher" since 7.1.1);
    # "stalled": it hangs, nothing dies
    import threading

    from watchdog.observers.inotify_c import InotifyFD

    handle = InotifyFD.handle_event

    def handle_event(self, event):
        if not fired and TRIGGER.encode() in (event.name or b""):
            if FAULT == "stalled":
                fired.append("stalled")
                threading.Event().wait()
            die("inotify dispatcher")
        return handle(self, event)

    InotifyFD.handle_event = handle_event
elif FAULT == "slow":  # the dispatcher keeps up with {slow_rate} inotify events a second
    import time

    from watchdog.observers.inotify_c import InotifyFD

    handle = InotifyFD.handle_event

    def slow_handle_event(self, event):
        time.sleep(1 / {slow_rate})
        return handle(self, event)

    InotifyFD.handle_event = slow_handle_event
elif FAULT == "observer":  # the thread that calls the handlers: observer.is_alive() turns False
    from watchdog.observers.api import EventQueue

    get = EventQueue.get

    def get_entry(self, *args, **kwargs):
        entry = get(self, *args, **kwargs)
        if not fired and isinstance(entry, tuple) and TRIGGER in str(entry[0].src_path):
            die("observer")
        return entry

    EventQueue.get = get_entry
'''


def scaled_env(
    home: Path, tmp_path: Path, *, retry: tuple[float, float], fault: str = ""
) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(
            root_check=ROOT_CHECK_S,
            poll=POLL_S,
            canary_every=CANARY_EVERY,
            canary_deadline=CANARY_DEADLINE,
            slow_rate=SLOW_RATE,
        )
    )
    return isolated_env(
        home,
        PYTHONPATH=str(site),
        TRACESD_TEST_RETRY=f"{retry[0]},{retry[1]}",
        TRACESD_TEST_FAULT=fault,
    )


def userns_limits_work() -> bool:
    """Can an inotify limit be lowered for one process tree (a user namespace of its own)?"""
    try:
        probe = subprocess.run(
            ["unshare", "-Ur", "sh", "-c", "echo 0 > /proc/sys/user/max_inotify_instances"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


class InotifyLimit:
    """One of the kernel's inotify limits, lowered for the daemon alone: it runs in a user
    namespace of its own (`unshare -Ur`, where /proc/sys/user/max_inotify_* are that
    namespace's limits), and the limit is raised again from outside with `nsenter`."""

    def __init__(self, name: str, value: int) -> None:
        self.path = f"/proc/sys/user/{name}"
        script = f'echo {value} > {self.path} && exec "$@"'
        self.prefix = ["unshare", "-Ur", "sh", "-c", script, "sh"]

    def set(self, pid: int, value: int) -> None:
        command = ["nsenter", "-t", str(pid), "-U", "sh", "-c", f"echo {value} > {self.path}"]
        subprocess.run(command, check=True, capture_output=True, timeout=10)


def new_session(project: Path, cwd: Path, prompt: str) -> tuple[str, float]:
    """A session written now (atomically); its id and the time it was written."""
    sid = str(uuid.uuid4())
    write_atomic(project / f"{sid}.jsonl", _session_lines(sid, cwd, prompt))
    return sid, time.monotonic()


def wait_row(daemon: Daemon, sid: str, timeout: float) -> float:
    """When the trace appeared (monotonic); fails after `timeout` seconds."""
    daemon.row(sid, timeout=timeout)
    return time.monotonic()


def wait_status(
    home: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = status_json(home)
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"status never matched: {status}"
        time.sleep(0.1)


def log_lines_with(daemon: Daemon, text: str) -> list[str]:
    return [line for line in daemon.log_path.read_text().splitlines() if text in line]


def assert_json_log(daemon: Daemon) -> None:
    """Nothing but structured lines: no bare traceback from a dying thread."""
    for line in daemon.log_path.read_text().splitlines():
        json.loads(line)


LIMIT_CASES = {
    # limit, value at start, what it refuses, the sysctl named, the fault
    "watch_limit_at_start": ("max_inotify_watches", 0, "fs.inotify.max_user_watches"),
    "watch_limit_on_new_directory": ("max_inotify_watches", 2, "fs.inotify.max_user_watches"),
    "instance_limit": ("max_inotify_instances", 0, "fs.inotify.max_user_instances"),
}


@pytest.fixture
def start() -> Iterator[Callable[..., Daemon]]:
    """Like the `daemons` fixture, with a command prefix (a user namespace)."""
    started: list[Daemon] = []

    def run(home: Path, *, env: dict[str, str], prefix: Sequence[str] = ()) -> Daemon:
        daemon = Daemon(home, env=env, prefix=prefix)
        started.append(daemon)
        return daemon

    yield run
    for daemon in started:
        daemon.kill()


def assert_watching_again(daemon: Daemon, home: Path, project: Path, cwd: Path) -> None:
    """Status is no longer degraded, the polls stopped, and a new session arrives by its
    event (no scan runs between its write and its row)."""
    status = wait_status(home, lambda s: s["state"] == "ok", timeout=5)
    watcher = status["watcher"]
    assert (status["degraded"], watcher["state"], watcher["fault"]) == ([], "ok", None)
    assert watcher["polled"] == []
    assert watcher["roots_watched"] == 1
    daemon.wait_for_event("scan.finished", where=lambda e: e["reason"] == "watcher_recovered")
    scans_before = len(daemon.events("scan.started"))
    sid, _ = new_session(project, cwd, "after recovery")
    daemon.row(sid, timeout=POLL_S)
    time.sleep(POLL_S + ROOT_CHECK_S)  # a poll would have started by now
    assert len(daemon.events("scan.started")) == scans_before


@pytest.mark.skipif(not userns_limits_work(), reason="no user namespaces: cannot lower a limit")
@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_inotify_limit_degrades_to_polling_until_the_limit_is_raised(
    start: Callable[..., Daemon], home: Path, tmp_path: Path, case: str
) -> None:
    """T12 (a) ENOSPC, at start and for a directory created later (watchdog swallows that
    one), and (b) EMFILE, with the kernel's real limits lowered for the daemon alone.
    Pass: the daemon keeps running; exactly one log line names the sysctl to raise;
    `status` says `degraded` (overall and in the watcher section, with the fault and the
    sysctl) and lists the root as polled; sessions written meanwhile are captured within
    2 x the poll interval; the watcher is retried after 0.5 s, 1 s, 2 s, 2 s... (the
    production schedule, 60 s doubling to 3600 s, time-scaled); once the limit is raised,
    watching resumes, status is `ok` again and polling stops."""
    name, value, sysctl = LIMIT_CASES[case]
    fault = "instance_limit" if "instances" in name else "watch_limit"
    repo = make_repo(tmp_path / "repo")
    root = home / ".claude" / "projects"
    project = _project_dir(home, repo)
    project.mkdir(parents=True)
    first, _ = new_session(project, repo, "before")
    limit = InotifyLimit(name, value)
    daemon = start(home, env=scaled_env(home, tmp_path, retry=(0.5, 2.0)), prefix=limit.prefix)
    daemon.wait_ready()
    daemon.row(first)
    if case == "watch_limit_on_new_directory":
        assert status_json(home)["state"] == "ok"  # root + one project: 2 watches, the limit
        project = _project_dir(home, repo / "sub")
        project.mkdir()  # its watch is refused

    daemon.wait_for_event("watcher.limit_reached", timeout=5)
    status = wait_status(home, lambda s: s["state"] == "degraded", timeout=5)
    watcher = status["watcher"]
    assert status["degraded"] == ["watcher"]
    assert (watcher["state"], watcher["fault"], watcher["sysctl"]) == ("degraded", fault, sysctl)
    assert watcher["polled"] == [str(root)]

    latencies = []
    for i in range(3):
        sid, written = new_session(project, repo, f"while degraded {i}")
        latencies.append(wait_row(daemon, sid, timeout=10) - written)
    print(f"\n{case}: captured while degraded in {', '.join(f'{t:.2f}' for t in latencies)} s")
    assert max(latencies) <= 2 * POLL_S
    assert [e for e in daemon.events("scan.started") if e["reason"] == "degraded_poll"]

    daemon.wait_for_event("watcher.retry_failed", where=lambda e: e["retries"] >= 3, timeout=10)
    retries = daemon.events("watcher.retry_failed")
    assert [e["next_retry_s"] for e in retries[:3]] == [1.0, 2.0, 2.0]
    times = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in retries]
    for before, after, e in zip(times, times[1:], retries, strict=False):
        assert after - before >= e["next_retry_s"] - 0.05

    limit.set(daemon.proc.pid, 8192)
    daemon.wait_for_event("watcher.recovered", timeout=2.0 + 2 * ROOT_CHECK_S + 5)
    assert_watching_again(daemon, home, project, repo)
    assert len(log_lines_with(daemon, sysctl)) == 1
    assert [e["sysctl"] for e in daemon.events("watcher.limit_reached")] == [sysctl]
    assert_json_log(daemon)
    assert daemon.stop() == 0


@pytest.mark.parametrize("thread", ["emitter", "reader", "dispatcher", "observer", "stalled"])
def test_a_dead_watchdog_thread_is_detected_polled_and_restarted(
    start: Callable[..., Daemon], home: Path, tmp_path: Path, thread: str
) -> None:
    """T12 (c): one of watchdog's threads dies of an exception (injected by sitecustomize
    into whichever thread does one job: emitter, inotify reader, inotify dispatcher (its
    own thread since watchdog 7.1.1, which ends the reader quietly when it fails), the
    observer; for all but the observer, `observer.is_alive()` stays True, watchdog #648),
    or the dispatcher hangs (`stalled`: no thread dies). Pass: a death is detected within
    the root check (0.5 s here, 2 s in production), a hang within the liveness canary's
    deadline (3 s here, 18 s in production); the daemon keeps running; exactly one log
    line, with the exception; status `degraded` (fault `watcher_died`) and the root
    polled; a session written meanwhile is captured within 2 x the poll interval, before
    the watcher restarts (first retry after 4 s); then watching resumes, status is `ok`."""
    repo = make_repo(tmp_path / "repo")
    root = home / ".claude" / "projects"
    project = _project_dir(home, repo)
    project.mkdir(parents=True)
    daemon = start(home, env=scaled_env(home, tmp_path, retry=(4.0, 16.0), fault=thread))
    daemon.wait_ready()
    assert status_json(home)["state"] == "ok"

    (project / "die-now.txt").write_text("the event that kills the thread\n")
    stalled = thread == "stalled"
    died = daemon.wait_for_event("watcher.observer_died", timeout=10 if stalled else 5)
    if stalled:
        assert (died["how"], died["threads"]) == ("stalled", [])
        assert "liveness canary" in died["error"]
    else:
        assert died["how"] == "died"
        assert "injected fault" in died["error"]
    status = wait_status(home, lambda s: s["state"] == "degraded", timeout=5)
    assert status["degraded"] == ["watcher"]
    assert (status["watcher"]["fault"], status["watcher"]["polled"]) == (
        "watcher_died",
        [str(root)],
    )

    sid, written = new_session(project, repo, "while the watcher is dead")
    latency = wait_row(daemon, sid, timeout=10) - written
    print(f"\n{thread} died: captured while degraded in {latency:.2f} s")
    assert latency <= 2 * POLL_S
    assert not daemon.events("watcher.recovered")  # polling did it, not a new watcher

    daemon.wait_for_event("watcher.recovered", timeout=4.0 + 2 * ROOT_CHECK_S + 5)
    assert_watching_again(daemon, home, project, repo)
    assert len(daemon.events("watcher.observer_died")) == 1
    assert not daemon.events("watcher.limit_reached")
    assert_json_log(daemon)
    assert daemon.stop() == 0


BACKLOG_FILES = 3_000


def test_a_backlog_behind_a_slow_watcher_is_dropped_and_rescanned(
    start: Callable[..., Daemon], home: Path, tmp_path: Path
) -> None:
    """watchdog 7.1.1 reads the kernel's queue into an unbounded one of its own: when the
    threads behind it fall behind, the kernel no longer overflows, and events (and the
    memory they hold) pile up. Here the dispatcher handles 200 events a second and 3,000
    sessions (9,000+ events, 45 s of work) are written at once. Pass: the liveness canary
    comes back late while events still trickle in, so this is a backlog, not a death:
    `watcher.backlog` is logged, the observer (and its queue) is replaced and the roots
    rescanned (`backlog`); every session is stored within 15 s of the last write (not
    after the 45 s the backlog would take); status is `ok`, nothing died."""
    repo = make_repo(tmp_path / "repo")
    project = _project_dir(home, repo)
    project.mkdir(parents=True)
    daemon = start(home, env=scaled_env(home, tmp_path, retry=(4.0, 16.0), fault="slow"))
    daemon.wait_ready()
    sids = []
    for i in range(BACKLOG_FILES):
        sid = str(uuid.uuid4())
        (project / f"{sid}.jsonl").write_text(_session_lines(sid, repo, f"backlog {i}"))
        sids.append(sid)
    written = time.monotonic()
    deadline = written + STORM_DEADLINE_S
    rows = 0
    while time.monotonic() < deadline:
        rows = query(daemon.db, "SELECT COUNT(*) AS n FROM traces")[0]["n"]
        if rows >= BACKLOG_FILES:
            break
        time.sleep(0.1)
    captured_s = time.monotonic() - written
    print(f"\nbacklog: {rows} of {BACKLOG_FILES} sessions stored {captured_s:.2f}s after")
    print(f"backlog: peak RSS {peak_rss_mb(daemon.proc.pid):.0f} MB")
    assert rows == BACKLOG_FILES
    assert daemon.events("watcher.backlog")
    daemon.wait_for_event("scan.finished", where=lambda e: e["reason"] == "backlog")
    assert not daemon.events("watcher.observer_died")
    status = status_json(home)
    assert (status["state"], status["degraded"]) == ("ok", [])
    assert status["watcher"]["backlogs"] >= 1
    assert_json_log(daemon)
    assert daemon.stop() == 0
