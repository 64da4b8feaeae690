"""`tracesd status`, `sync` and `doctor` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import Daemon, claude_session, db_path, isolated_env, make_repo, tracesd
from tracesd.store.migrations import SCHEMA_VERSION

StartDaemon = Callable[..., Daemon]


def running(daemons: StartDaemon, home: Path, env: dict[str, str] | None = None) -> Daemon:
    (home / ".claude" / "projects").mkdir(parents=True, exist_ok=True)
    daemon = daemons(home, env=env or isolated_env(home))
    daemon.wait_ready()
    daemon.wait_for_event("status.listening")
    return daemon


def with_sync(home: Path, url: str, key: str = "sk-good") -> dict[str, str]:
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[sync]\napi_url = "{url}"\nscope = "all"\ninterval_s = 60\nmax_backoff_s = 1\n'
    )
    return isolated_env(home, TRACES_API_KEY=key)


def test_status_without_a_daemon_exits_3_with_a_hint(home: Path) -> None:
    result = tracesd(home, "status")
    assert result.returncode == 3
    assert "tracesd service install" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert tracesd(home, "status", "--json").returncode == 3


def test_status_json_is_exactly_the_socket_answer(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    daemon = running(daemons, home)
    daemon.row(claude_session(home, make_repo(tmp_path / "r"))[0])
    answer = json.loads(tracesd(home, "status", "--json").stdout)
    assert answer["pid"] == daemon.proc.pid
    assert answer["traces"]["total"] == 1
    assert set(answer) >= {
        "version",
        "pid",
        "uptime_s",
        "db_path",
        "agents",
        "traces",
        "capture",
        "sync",
    }


def test_status_reads_at_a_glance(daemons: StartDaemon, home: Path, tmp_path: Path) -> None:
    daemon = running(daemons, home)
    daemon.row(claude_session(home, tmp_path)[0])
    out = tracesd(home, "status").stdout
    assert f"pid {daemon.proc.pid}" in out
    assert "claude-code" in out
    assert "watching" in out
    assert "not found: codex, gemini-cli" in out  # agents not in use: one line
    assert "traces    1 (claude-code 1)" in out
    assert "sync      off" in out


def test_sync_when_sync_is_off_says_how_to_turn_it_on(daemons: StartDaemon, home: Path) -> None:
    running(daemons, home)
    result = tracesd(home, "sync")
    assert result.returncode == 2
    assert "api_url" in result.stderr


def test_sync_now_sends_and_reports(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    env = with_sync(home, fault.url)
    daemon = running(daemons, home, env)
    daemon.row(claude_session(home, tmp_path)[0])
    result = tracesd(home, "sync", "--json", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"sent", "succeeded", "failed", "pending"}
    assert answer["pending"] == 0
    assert len(fault.server.stored) == 1
    status = json.loads(tracesd(home, "status", "--json", env=env).stdout)
    assert status["sync"]["synced_total"] == 1
    assert status["sync"]["api_url"] == fault.url


def test_a_refused_trace_shows_in_status_with_its_reason(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    session_id, _ = claude_session(home, tmp_path)

    def refuse(plan: Plan) -> None:
        plan.item_status[session_id] = 422

    fault.call(refuse, fault.server.plan)
    env = with_sync(home, fault.url)
    running(daemons, home, env)
    tracesd(home, "sync", "--json", env=env)
    status = json.loads(tracesd(home, "status", "--json", env=env).stdout)
    assert status["sync"]["failed"] == 1
    assert status["sync"]["failures"] == [
        {"trace_id": session_id, "error": "HTTP 422: refused with 422"}
    ]
    assert "refused:" in tracesd(home, "status", env=env).stdout


def test_doctor_on_a_healthy_setup(
    daemons: StartDaemon, home: Path, fault: ThreadedFaultServer
) -> None:
    env = with_sync(home, fault.url)
    running(daemons, home, env)
    result = tracesd(home, "doctor", env=env)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok    daemon") for line in lines)
    assert any(
        line.startswith("ok    database") and f"schema {SCHEMA_VERSION}" in line for line in lines
    )
    assert any(line.startswith("ok    git") for line in lines)
    assert any(line.startswith("ok    agent claude-code") for line in lines)
    assert any(line.startswith("ok    api key") for line in lines)
    report = json.loads(tracesd(home, "doctor", "--json", env=env).stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"daemon", "database", "inotify", "git"}


def test_doctor_on_a_broken_setup_says_what_and_how_to_fix(
    home: Path, fault: ThreadedFaultServer
) -> None:
    """No daemon, a database from the future, a refused key: each its own line and fix."""
    db = db_path(home)
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 9")

    def locked(plan: Plan) -> None:
        plan.token = "the-right-key"

    fault.call(locked, fault.server.plan)
    env = with_sync(home, fault.url, key="sk-wrong")
    result = tracesd(home, "doctor", env=env)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  daemon" in out
    assert "tracesd service install" in out
    assert "FAIL  database" in out
    assert "upgrade tracesd" in out
    assert "FAIL  api key" in out
    assert "sk-wrong" not in out
    report = json.loads(tracesd(home, "doctor", "--json", env=env).stdout)
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"daemon", "database", "api key"}


def test_doctor_names_an_unreachable_backend(home: Path) -> None:
    env = with_sync(home, "http://127.0.0.1:9")
    report = json.loads(tracesd(home, "doctor", "--json", env=env).stdout)
    [backend] = [c for c in report["checks"] if c["name"] == "backend"]
    assert backend["status"] == "fail"
    assert "api_url" in backend["fix"]
