"""Sync end to end: a real `tracesd run` process, its real database, and a real HTTP server."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import Daemon, claude_session, db_path, git, isolated_env, make_repo

StartDaemon = Callable[..., Daemon]


@pytest.fixture
def fault() -> Iterator[ThreadedFaultServer]:
    server = ThreadedFaultServer()
    yield server
    server.close()


def sync_config(
    home: Path, url: str, *, max_backoff_s: float = 0.5, scope: str = "all", extra: str = ""
) -> dict[str, str]:
    """Sync to `url`; scope "all" unless told (these tests are about every trace syncing)."""
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[sync]\napi_url = "{url}"\nscope = "{scope}"\ninterval_s = 0.5\n'
        f"max_backoff_s = {max_backoff_s}\n{extra}"
    )
    return isolated_env(home, TRACES_API_KEY="sk-e2e-KEY-9876")


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_captured_traces_reach_the_server_with_git_context(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    repo = make_repo(tmp_path / "repo", remote="https://u:tok@github.com/acme/app.git")
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = daemons(home, env=sync_config(home, fault.url))
    daemon.wait_ready()
    session_id, _ = claude_session(home, repo, "Ship it")
    wait_for(lambda: session_id in fault.server.stored)
    sent = fault.server.stored[session_id]
    assert sent["gitRemoteUrl"] == "https://github.com/acme/app"
    assert sent["gitBranch"] == "main"
    assert sent["gitRef"] == git(repo, "rev-parse", "HEAD")
    assert sent["title"] == "Ship it"
    assert all(s.authorization == "Bearer sk-e2e-KEY-9876" for s in fault.server.seen)
    assert daemon.stop() == 0
    assert b"sk-e2e-KEY-9876" not in daemon.log_path.read_bytes()


def test_pending_traces_and_backoff_survive_kill_9(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """Down server, captures pile up, kill -9: after restart they are all sent, and the
    restarted daemon waits out the stored backoff instead of hammering."""
    (home / ".claude" / "projects").mkdir(parents=True)
    env = sync_config(home, fault.url, max_backoff_s=3)

    def outage(plan: Plan) -> None:
        plan.fail_until = time.monotonic() + 3600

    fault.call(outage, fault.server.plan)
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    ids = [claude_session(home, tmp_path, f"p{i}")[0] for i in range(10)]
    for session_id in ids:
        daemon.row(session_id)
    wait_for(lambda: any(s.status == 503 for s in fault.server.seen))
    daemon.wait_for_event("sync.backoff")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(5)

    with sqlite3.connect(db_path(home)) as conn:
        state = dict(conn.execute("SELECT key, value FROM tracesd_sync_state"))
        pending = conn.execute(
            "SELECT COUNT(*) FROM tracesd_outbox WHERE version > sent_version"
        ).fetchone()[0]
    assert pending == 10
    assert int(state["consecutive_failures"]) >= 1

    def recover(plan: Plan) -> None:
        plan.fail_until = 0.0

    fault.call(recover, fault.server.plan)
    next_attempt = float(state["next_attempt_at"])
    again = daemons(home, env=env)
    wait_for(lambda: set(ids) <= set(fault.server.stored), timeout=20)
    first_after = min(s.at for s in fault.server.seen if s.status == 200)
    assert first_after >= time.monotonic() - (time.time() - next_attempt) - 0.2
    assert again.stop() == 0


def test_daemon_and_reference_server_end_to_end(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """`tracesd run` syncs to `tracesd server`; the server lists all traces of a repository."""
    import json
    import subprocess
    import sys
    import urllib.request

    server_home = tmp_path / "server-home"
    server_home.mkdir()
    log = tmp_path / "server.log"
    env = isolated_env(server_home, TRACESD_SERVER_TOKENS="tok-e2e")
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tracesd", "server", "--port", "0", "--log-format", "json"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "server.started" in log.read_text())
        started = next(
            json.loads(line) for line in log.read_text().splitlines() if "server.started" in line
        )
        url = f"http://127.0.0.1:{started['port']}"
        app = make_repo(tmp_path / "app", remote="https://github.com/acme/app.git")
        lib = make_repo(tmp_path / "lib", remote="https://github.com/acme/lib.git")
        (home / ".claude" / "projects").mkdir(parents=True)
        daemon_env = sync_config(home, url)
        daemon_env["TRACES_API_KEY"] = "tok-e2e"
        daemon = daemons(home, env=daemon_env)
        daemon.wait_ready()
        in_app = [claude_session(home, app, f"app {i}")[0] for i in range(3)]
        claude_session(home, lib, "lib work")

        def listed(remote: str) -> list[dict[str, object]]:
            request = urllib.request.Request(
                f"{url}/v1/traces?gitRemoteUrl={remote}",
                headers={"Authorization": "Bearer tok-e2e"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())["traces"]  # type: ignore[no-any-return]

        wait_for(lambda: len(listed("https://github.com/acme/app.git")) == 3)
        traces = listed("https://github.com/acme/app.git")
        assert {t["externalId"] for t in traces} == set(in_app)
        assert {t["gitRef"] for t in traces} == {git(app, "rev-parse", "HEAD")}
        assert {t["gitBranch"] for t in traces} == {"main"}
        assert len(listed("https://github.com/acme/lib.git")) == 1
        assert daemon.stop() == 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
