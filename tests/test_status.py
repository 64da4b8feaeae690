"""The status socket of a real `tracesd run`: shape, permissions, one instance, hostile
clients; the status document read back as the CLI reads it, and rendered as text and
metrics from the same fields; and sd_notify as systemd would see it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import Daemon, claude_session, db_path, isolated_env, make_repo, runtime_dir
from tracesd.errors import NotRunning
from tracesd.service.notify import Notifier
from tracesd.status import text, wire
from tracesd.status.socket import request

StartDaemon = Callable[..., Daemon]

#: INTERFACE section 6: what GET /status returns "at least", part by part
DOCUMENTED = {
    "": {"version", "pid", "uptime_s", "db_path", "agents", "traces", "capture", "sync"}
    | {"traces_cli", "state"},
    "agents[]": {"id", "root", "exists", "watching"},
    "traces": {"total", "by_agent"},
    "capture": {"captured_total", "errors_total", "last_capture_at"},
    "sync": {"enabled", "api_url", "pending", "failed", "synced_total"}
    | {"consecutive_failures", "last_success_at", "last_error", "next_attempt_at"},
}
#: every key GET /status answers with, part by part (sync off; SYNC_ON adds its own):
#: renaming, adding or dropping one changes the contract, and fails here
KEYS = {
    "": {"version", "pid", "uptime_s", "state", "degraded", "db_path", "socket_path"}
    | {"database", "agents", "traces", "capture", "git", "watcher", "scan", "sync"}
    | {"traces_cli"},
    "database": {"busy", "busy_since", "busy_episodes", "full", "full_since"}
    | {"full_episodes", "quarantined"},
    "agents[]": {"id", "root", "exists", "watching", "degraded"},
    "traces": {"total", "by_agent"},
    "capture": {"captured_total", "updated_total", "errors_total", "errors_by_reason"}
    | {"skipped_by_reason", "refused_by_kind", "last_capture_at", "last_error"},
    "git": {"lookups", "cache_hits", "timeouts", "failures"},
    "watcher": {"state", "fault", "error", "sysctl", "degraded_since", "retries"}
    | {"next_retry_at", "failures_total", "polled", "roots_watched", "watches", "events"}
    | {"overflows", "backlogs", "rescans", "handler_errors", "degraded"},
    "scan": {"running", "last"},
    "scan.last": {"discovered", "indexed", "errors", "skipped", "unchanged", "new"}
    | {"updated", "duration_s"},
    "sync": DOCUMENTED["sync"] | {"scope", "messages"},
    "sync.messages": {"enabled", "followed", "pending", "refused", "sent_total"}
    | {"oversized_total", "unreadable"},
    "traces_cli": {"enabled", "path", "found", "has_git_columns", "rows_enriched"}
    | {"shares_copied", "passes", "last_error", "busy", "watching"},
}
SYNC_ON = {
    "sync": KEYS["sync"] | {"auth_paused", "mode", "requests", "failures"},
    "sync.failures[]": {"trace_id", "error"},
}
#: maps whose keys are data (agent ids, reasons, kinds), not part of the contract
DATA_MAPS = {"traces.by_agent", "capture.errors_by_reason", "capture.skipped_by_reason"} | {
    "capture.refused_by_kind"
}


def sock(home: Path) -> Path:
    return runtime_dir(home) / "tracesd" / "tracesd.sock"


def ask(home: Path, method: str = "GET", path: str = "/status") -> Any:
    return asyncio.run(request(sock(home), method, path))


def started(daemons: StartDaemon, home: Path, **env: str) -> Daemon:
    (home / ".claude" / "projects").mkdir(parents=True, exist_ok=True)
    daemon = daemons(home, env=isolated_env(home, **env))
    daemon.wait_ready()
    daemon.wait_for_event("status.listening")
    return daemon


def keys(answer: Any, path: str = "") -> dict[str, set[str]]:
    """The keys of every object in a JSON answer, by path ("sync", "agents[]" for the
    objects in a list)."""
    found: dict[str, set[str]] = {}
    if isinstance(answer, dict) and path not in DATA_MAPS:
        found[path] = set(answer)
        for key, value in answer.items():
            found |= keys(value, f"{path}.{key}".lstrip("."))
    elif isinstance(answer, list):
        for item in answer:
            for inner, names in keys(item, f"{path}[]").items():
                found[inner] = found.get(inner, set()) | names
    return found


def metric(families: dict[str, Any], name: str) -> float:
    [sample] = families[name].samples
    value: float = sample.value
    return value


def raw_get(path: Path, timeout: float = 5.0) -> tuple[float, bytes]:
    """GET /status with a plain socket: (seconds it took, the answer)."""
    began = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return time.monotonic() - began, answer


def test_status_has_the_documented_shape(daemons: StartDaemon, home: Path, tmp_path: Path) -> None:
    daemon = started(daemons, home)
    session_id, _ = claude_session(home, make_repo(tmp_path / "repo"))
    daemon.row(session_id)
    status = ask(home)
    assert status["pid"] == daemon.proc.pid
    assert status["version"] == "0.1.0"
    assert status["db_path"] == str(db_path(home))
    assert {"id", "root", "exists", "watching"} <= set(status["agents"][0])
    assert status["traces"] == {"total": 1, "by_agent": {"claude-code": 1}}
    assert status["capture"]["captured_total"] == 1
    assert status["capture"]["last_capture_at"].endswith("Z")
    assert status["sync"]["enabled"] is False
    # scope "shared" (the default): a trace the Traces CLI has not shared is not waiting
    assert status["sync"]["scope"] == "shared"
    assert status["sync"]["pending"] == 0
    for key in ("roots_watched", "watches", "overflows", "rescans", "degraded"):
        assert key in status["watcher"]
    assert status["watcher"]["watches"] >= 2
    found = keys(status)
    assert found == KEYS
    for part, documented in DOCUMENTED.items():
        assert documented <= found[part], part


def test_with_sync_on_the_json_text_and_metrics_show_the_same_fields(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """The document the daemon builds, as JSON (every key exactly), read back by the CLI
    (nothing lost or renamed on the way: it writes back the same JSON), as the CLI's text
    and as /metrics: the same values."""
    session_id, _ = claude_session(home, tmp_path)

    def refuse(plan: Plan) -> None:
        plan.item_status[session_id] = 422

    fault = ThreadedFaultServer()
    try:
        fault.call(refuse, fault.server.plan)
        config = home / ".config" / "tracesd" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'[sync]\napi_url = "{fault.url}"\nscope = "all"\ninterval_s = 60\n')
        daemon = started(daemons, home, TRACES_API_KEY="sk-status")
        daemon.row(session_id)
        assert ask(home, "POST", "/sync")["failed"] == 1
        answer = ask(home)
        families = {f.name: f for f in text_string_to_metric_families(metrics_page(home))}
    finally:
        fault.close()

    found = keys(answer)
    assert found == KEYS | SYNC_ON
    for part, documented in DOCUMENTED.items():
        assert documented <= found[part], part
    document = wire.parse(answer)
    assert wire.as_json(document) == answer

    assert document.sync.activity is not None
    [refusal] = document.sync.activity.failures
    assert (refusal.trace_id, refusal.error) == (session_id, "HTTP 422: refused with 422")
    lines = text.status(document)
    assert f"          refused: {session_id}: HTTP 422: refused with 422" in lines
    assert f"sync      {fault.url}: 0 pending, 1 failed, 0 synced; last success" in "\n".join(lines)
    assert "capture   1 captured, last " in "\n".join(lines)

    assert metric(families, "tracesd_sync_enabled") == 1
    assert metric(families, "tracesd_sync_failed") == document.sync.failed == 1
    assert metric(families, "tracesd_sync_pending") == document.sync.pending == 0
    assert metric(families, "tracesd_captured") == document.capture.captured_total == 1
    assert document.capture.last_capture_at is not None
    # the same moment: the JSON shows it to the millisecond, the metric in full
    captured_at = metric(families, "tracesd_last_capture_timestamp_seconds")
    assert abs(captured_at - document.capture.last_capture_at) < 0.001
    assert document.sync.last_success_at is not None
    succeeded_at = metric(families, "tracesd_sync_last_success_timestamp_seconds")
    assert abs(succeeded_at - document.sync.last_success_at) < 0.001


def test_an_answer_from_another_version_is_read_without_crashing() -> None:
    """Missing keys and parts read as empty, unknown ones are ignored, a value of the wrong
    type reads as empty: the text says less, and never fails."""
    answer = {
        "version": "0.0.9",
        "pid": 5,
        "uptime_s": 3,
        "agents": [{"id": "codex", "root": "/r", "exists": True, "watching": True, "new": 1}],
        "traces": {"total": "many", "by_agent": {"codex": 2, "bad": "x"}},
        "capture": {"captured_total": True, "last_capture_at": "not a time"},
        "watcher": "degraded",
        "sync": {"enabled": True, "api_url": "https://api.example", "failures": [1, {}]},
        "a_part_from_the_future": {"x": 1},
    }
    assert text.status(wire.parse(answer)) == [
        "tracesd 0.0.9, pid 5, up 3s  ()",
        "agents    codex        /r  watching",
        "traces    0 (codex 2)",
        "capture   0 captured, last never; 0 errors",
        "watcher   0 roots, 0 overflows, 0 scans",
        "sync      https://api.example: 0 pending, 0 failed, 0 synced; last success never",
        "          refused: : ",
    ]
    others: list[object] = [None, [], "text", {"sync": None, "agents": {}}]
    for other in others:
        assert text.status(wire.parse(other))[0] == "tracesd , pid 0, up 0s  ()"


def test_the_socket_is_private(daemons: StartDaemon, home: Path) -> None:
    started(daemons, home)
    assert stat.S_IMODE(sock(home).stat().st_mode) == 0o600
    assert stat.S_IMODE(sock(home).parent.stat().st_mode) == 0o700


def test_sync_now_without_sync_configured_says_so(daemons: StartDaemon, home: Path) -> None:
    started(daemons, home)
    with pytest.raises(Exception, match=r"sync is off"):
        ask(home, "POST", "/sync")


def metrics_page(home: Path) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(sock(home)))
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer.split(b"\r\n\r\n", 1)[1].decode()


def test_metrics_are_prometheus_text(daemons: StartDaemon, home: Path, tmp_path: Path) -> None:
    daemon = started(daemons, home)
    daemon.row(claude_session(home, tmp_path)[0])
    body = metrics_page(home)
    families = {f.name: f for f in text_string_to_metric_families(body)}
    [sample] = families["tracesd_traces"].samples
    assert (sample.labels, sample.value) == ({"agent": "claude-code"}, 1.0)
    assert families["tracesd_captured"].samples[0].value == 1.0


def test_a_stale_socket_is_replaced(daemons: StartDaemon, home: Path) -> None:
    """A socket file left by a killed daemon does not stop the next one."""
    path = sock(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    daemon = started(daemons, home)
    assert ask(home)["pid"] == daemon.proc.pid
    assert daemon.events("status.stale_socket_removed")


def test_a_second_daemon_is_refused_and_the_first_keeps_working(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    first = started(daemons, home)
    second = daemons(home)
    assert second.proc.wait(15) == 1
    assert f"already running (pid {first.proc.pid}" in second.log_path.read_text()
    assert ask(home)["pid"] == first.proc.pid
    first.row(claude_session(home, tmp_path)[0])


def test_the_socket_is_gone_after_sigterm(daemons: StartDaemon, home: Path) -> None:
    daemon = started(daemons, home)
    assert sock(home).exists()
    assert daemon.stop() == 0
    assert not sock(home).exists()
    with pytest.raises(NotRunning):
        ask(home)


def test_idle_and_garbage_clients_do_not_block_a_normal_one(
    daemons: StartDaemon, home: Path
) -> None:
    started(daemons, home)
    path = sock(home)
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(50)]
    for client in idle:
        client.connect(str(path))  # and never say anything
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(str(path))
    half.sendall(b"GET /status HTTP/1.1\r\nHost: loc")  # and stop mid-header
    garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    garbage.connect(str(path))
    garbage.settimeout(5)
    with contextlib.suppress(OSError):  # the server may hang up on it first: also fine
        garbage.sendall(os.urandom(256 * 1024))
    try:
        took, answer = raw_get(path)
        assert took < 1.0
        assert b"200 OK" in answer.split(b"\r\n", 1)[0]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["pid"]
        time.sleep(3)  # idle connections are dropped after ~2 s
        idle[0].settimeout(1)
        assert idle[0].recv(1) == b""
    finally:
        for client in [*idle, half, garbage]:
            client.close()


# ---------------------------------------------------------------------------- sd_notify


def test_systemd_sees_ready_status_watchdog_then_stopping(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """READY=1 only once the socket is up, then STATUS and WATCHDOG pings, STOPPING last."""
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = daemons(
        home, env=isolated_env(home, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000")
    )
    messages: list[str] = []
    try:
        first = listener.recv(4096).decode()
        assert first.startswith("READY=1")
        assert sock(home).exists()  # the socket was up before READY=1
        assert f"MAINPID={daemon.proc.pid}" in first
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            messages.append(listener.recv(4096).decode())
        assert sum("WATCHDOG=1" in m for m in messages) >= 4  # every 0.2 s
        daemon.signal(signal.SIGTERM)
        while "STOPPING=1" not in messages[-1]:
            messages.append(listener.recv(4096).decode())
        assert daemon.proc.wait(10) == 0
    finally:
        listener.close()


def _block_the_event_loop(seconds: float) -> None:
    """What a bug (a blocking call on the loop) does: no task runs meanwhile."""
    time.sleep(seconds)


async def test_watchdog_pings_stop_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    """The pings come from the loop itself: a blocked loop cannot keep systemd happy."""
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    pings = asyncio.create_task(notifier.watchdog(lambda: "ok"))
    arrivals: list[float] = []

    def drain() -> None:
        while True:
            try:
                if b"WATCHDOG=1" in listener.recv(4096):
                    arrivals.append(time.monotonic())
            except BlockingIOError:
                return

    await asyncio.sleep(0.3)
    drain()
    blocked_at = time.monotonic()
    _block_the_event_loop(1.0)
    drain()
    assert not [t for t in arrivals if blocked_at < t]  # nothing arrived while blocked
    await asyncio.sleep(0.3)
    drain()
    assert [t for t in arrivals if t > blocked_at + 1.0]  # and they resume
    pings.cancel()
    notifier.close()
    listener.close()
