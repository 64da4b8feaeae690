"""End to end: a real `tracesd run` process, real files, real git, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Daemon,
    claude_session,
    codex_session,
    db_path,
    git,
    isolated_env,
    make_repo,
    query,
    write_atomic,
)

StartDaemon = Callable[..., Daemon]


def started(daemons: StartDaemon, home: Path) -> Daemon:
    (home / ".claude" / "projects").mkdir(parents=True, exist_ok=True)
    daemon = daemons(home)
    daemon.wait_ready()
    return daemon


def test_session_written_while_running_is_captured_with_git_context(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", remote="https://github.com/acme/app.git")
    daemon = started(daemons, home)
    session_id, path = claude_session(home, repo, "Make it faster")
    row = daemon.row(session_id)
    assert row["git_remote_url"] == "https://github.com/acme/app"
    assert row["git_branch"] == "main"
    assert row["git_ref"] == git(repo, "rev-parse", "HEAD")
    assert (row["title"], row["directory"], row["source_path"]) == (
        "Make it faster",
        str(repo),
        str(path),
    )
    assert daemon.stop() == 0


def test_new_branch_is_seen_by_a_session_started_right_after_checkout(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """`git checkout -b x`, then a new session within 200 ms: its trace says branch x."""
    repo = make_repo(tmp_path / "repo")
    daemon = started(daemons, home)
    first, _ = claude_session(home, repo)
    assert daemon.row(first)["git_branch"] == "main"  # the cache now holds main

    git(repo, "checkout", "-q", "-b", "x")
    checked_out = time.monotonic()
    second, _ = claude_session(home, repo)
    assert time.monotonic() - checked_out < 0.2
    row = daemon.row(second)
    assert row["git_branch"] == "x"
    assert daemon.row(first)["git_branch"] == "main"  # captured context never rewritten


def test_every_agent_session_is_captured(daemons: StartDaemon, home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (home / ".codex" / "sessions").mkdir(parents=True)
    gemini_project = home / ".gemini" / "tmp" / "repo" / "chats"
    gemini_project.mkdir(parents=True)
    (gemini_project.parent / ".project_root").write_text(str(repo))
    daemon = started(daemons, home)

    codex_id, _ = codex_session(home, repo, "codex prompt")
    write_atomic(
        gemini_project / "session-2026-11-28T10-00-g1.jsonl",
        json.dumps({"sessionId": "g1", "startTime": "2026-11-28T10:00:00Z"})
        + "\n"
        + json.dumps({"id": "m", "type": "user", "content": [{"text": "gemini prompt"}]})
        + "\n",
    )
    assert daemon.row(codex_id)["title"] == "codex prompt"
    gemini_row = daemon.row("g1")
    assert gemini_row["title"] == "gemini prompt"
    assert gemini_row["git_ref"] == git(repo, "rev-parse", "HEAD")


def test_bad_inputs_are_skipped_and_later_sessions_still_flow(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """Binary, malformed, empty, huge-line, FIFO, vanished, odd names: logged, counted,
    and the next good session is captured by a daemon that is still running."""
    daemon = started(daemons, home)
    project = home / ".claude" / "projects" / "bad"
    project.mkdir()
    (project / "binary.jsonl").write_bytes(os.urandom(8192))
    (project / "malformed.jsonl").write_text('{"type": "user", \n[1, 2\n')
    (project / "empty.jsonl").write_text("")
    (project / "nested.jsonl").write_text("[" * 200_000 + "\n")
    with (project / "huge.jsonl").open("wb") as f:
        f.write(b'{"type":"user","x":"' + b"a" * (50 * 1024 * 1024) + b'"}\n')
    os.mkfifo(project / "fifo.jsonl")
    (project / "dir.jsonl").mkdir()
    (project / "vanishing.jsonl").write_text("{}\n")
    (project / "vanishing.jsonl").unlink()
    (project / "newline\nname.jsonl").write_text("garbage\n")
    with open(os.fsencode(project) + b"/\xff\xfe.jsonl", "wb") as f:
        f.write(b"{}\n")

    session_id, _ = claude_session(home, tmp_path, "still works")

    assert daemon.row(session_id)["title"] == "still works"
    # A file still being written (the 50 MB one) is read again after the change cooldown,
    # which may end after the good session is in: wait for each reason, not for a moment.
    for reason in ("binary", "malformed", "oversize", "not_a_file"):

        def for_reason(event: dict[str, Any], reason: str = reason) -> bool:
            return bool(event["reason"] == reason)

        daemon.wait_for_event("ingest.parse_failed", where=for_reason)
    skipped = {e["reason"] for e in daemon.events("ingest.skipped")}
    assert "empty" in skipped
    assert daemon.proc.poll() is None
    # A path with a newline is escaped, never a forged log line.
    for line in daemon.log_path.read_text().splitlines():
        json.loads(line)
    assert daemon.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_within_ten_seconds(
    daemons: StartDaemon, home: Path, sig: signal.Signals
) -> None:
    daemon = started(daemons, home)
    began = time.monotonic()
    daemon.signal(sig)
    assert daemon.proc.wait(10) == 0
    assert time.monotonic() - began < 10
    assert daemon.events("daemon.stopped")


def test_kill_9_loses_no_committed_trace_and_restart_catches_up(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """Rows survive kill -9; sessions written while the daemon was down arrive on restart."""
    repo = make_repo(tmp_path / "repo")
    daemon = started(daemons, home)
    before = [claude_session(home, repo)[0] for _ in range(20)]
    for session_id in before:
        daemon.row(session_id)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(5)

    while_down = [claude_session(home, repo)[0] for _ in range(20)]
    with sqlite3.connect(db_path(home)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    again = daemons(home)
    for session_id in before + while_down:
        assert again.row(session_id)["git_ref"] == git(repo, "rev-parse", "HEAD")
    rows = query(again.db, "SELECT COUNT(*) AS n FROM traces")
    assert rows[0]["n"] == 40


def test_queue_overflow_triggers_a_rescan_that_loses_nothing(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """Paused while thousands of sessions appear, the daemon overflows inotify's queue,
    notices, rescans, and captures every one."""
    daemon = started(daemons, home)
    daemon.row(claude_session(home, tmp_path)[0])  # the project directory is watched now
    daemon.signal(signal.SIGSTOP)
    try:
        ids = [claude_session(home, tmp_path, f"p{i}")[0] for i in range(5000)]
    finally:
        daemon.signal(signal.SIGCONT)
    daemon.wait_for_event("watcher.overflow", timeout=20)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = query(daemon.db, "SELECT COUNT(*) AS n FROM traces")[0]["n"]
        if count == len(ids) + 1:
            break
        time.sleep(0.2)
    stored = {r["id"] for r in query(daemon.db, "SELECT id FROM traces")}
    assert set(ids) <= stored


def test_agent_root_created_after_start_is_picked_up(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """A fresh install: ~/.claude does not exist when the daemon starts."""
    daemon = daemons(home)
    daemon.wait_ready()
    session_id, _ = claude_session(home, tmp_path, "first ever session")
    assert daemon.row(session_id)["title"] == "first ever session"


def test_credentials_never_reach_the_database_or_the_log(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    token = "ghp_S3CR3TT0K3N"
    repo = make_repo(tmp_path / "repo", remote=f"https://alice:{token}@github.com/acme/app.git")
    daemon = started(daemons, home)
    session_id, _ = claude_session(home, repo)
    assert daemon.row(session_id)["git_remote_url"] == "https://github.com/acme/app"
    assert daemon.stop() == 0
    artifacts = [daemon.log_path, *sorted(db_path(home).parent.glob("traces.db*"))]
    for artifact in artifacts:
        assert token.encode() not in artifact.read_bytes(), artifact


def test_a_concurrent_scan_and_the_daemon_share_the_database_safely(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """Two writers (the daemon and `tracesd scan`; the Traces CLI is a third) on one file."""
    daemon = started(daemons, home)
    ids = [claude_session(home, tmp_path)[0] for _ in range(30)]
    scan = subprocess.Popen(
        [sys.executable, "-m", "tracesd", "scan", "--json"],
        env=isolated_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    more = [claude_session(home, tmp_path)[0] for _ in range(30)]
    _, err = scan.communicate(timeout=60)
    assert scan.returncode == 0, err
    for session_id in ids + more:
        daemon.row(session_id)
    assert daemon.stop() == 0
    with sqlite3.connect(db_path(home)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0] == 60
