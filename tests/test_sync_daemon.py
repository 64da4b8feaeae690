"""Sync end to end: a real `tracesd run` process, its real database, and a real HTTP server."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import (
    Daemon,
    claude_session,
    db_path,
    git,
    isolated_env,
    make_repo,
    query,
    sync_config,
    tracesd,
    wait_for,
)

StartDaemon = Callable[..., Daemon]


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
                document = json.loads(response.read())
                # the envelope of issue 12's server, or the bare shape of the one before
                return document.get("data", document)["traces"]  # type: ignore[no-any-return]

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


def daemon_status(home: Path) -> dict[str, Any]:
    result = tracesd(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _hosted_daemon(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer, scope: str
) -> tuple[Daemon, Path, Path, Path]:
    """A real `tracesd run` syncing to a server that behaves like the hosted API (envelope,
    no batch endpoint), with a Traces CLI database beside it; its own database outside
    ~/.traces. Returns the daemon, our database, the CLI's, and a repository."""
    from tests.clidb import make_cli_db

    def hosted(plan: Plan) -> None:
        plan.hosted = True

    fault.call(hosted, fault.server.plan)
    own = home / "own" / "traces.db"
    env = sync_config(home, fault.url, scope=scope, extra=f'[storage]\ndb_path = "{own}"\n')
    repo = make_repo(tmp_path / "repo", remote="git@github.com:Acme/App.git")
    (home / ".claude" / "projects").mkdir(parents=True)
    cli = make_cli_db(home / ".local" / "share" / "traces" / "traces.db")
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    return daemon, own, cli, repo


def _share(cli: Path, trace_id: str, url: str | None) -> None:
    """What `traces share` leaves in the CLI's file: the row, with its share URL."""
    conn = sqlite3.connect(cli, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO traces (id, agent_id, created_at, remote_url)"
            " VALUES (?, 'claude-code', 1, ?)"
            " ON CONFLICT (id) DO UPDATE SET remote_url = excluded.remote_url",
            (trace_id, url),
        )
    finally:
        conn.close()


def _row(own: Path, trace_id: str) -> dict[str, object]:
    rows = query(own, "SELECT * FROM traces WHERE id = ?", trace_id)
    return rows[0] if rows else {}


def test_scope_all_puts_each_trace_to_a_hosted_like_server_with_the_cli_field_set(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """scope "all" against a server like the hosted API: the batch request is answered 404,
    so every trace is PUT; a trace the CLI shared carries its git context only, another
    exactly what the CLI would send for it; never a visibility, preview or timestamp."""

    def down(plan: Plan) -> None:  # until the share state is known: the final bodies only
        plan.fail_until = float("inf")

    fault.call(down, fault.server.plan)
    daemon, own, cli, repo = _hosted_daemon(daemons, home, tmp_path, fault, "all")
    shared, _ = claude_session(home, repo, "Shared with the CLI")
    local, _ = claude_session(home, repo, "x" * 150)
    _share(cli, shared, "https://www.traces.com/s/j9")
    wait_for(lambda: _row(own, shared).get("shared_url") == "https://www.traces.com/s/j9")
    wait_for(lambda: bool(_row(own, local)))

    def up(plan: Plan) -> None:
        plan.fail_until = 0.0

    fault.call(up, fault.server.plan)
    wait_for(lambda: {shared, local} <= set(fault.server.stored))
    head = git(repo, "rev-parse", "HEAD")
    git_context = {
        "gitRemoteUrl": "https://github.com/Acme/App",
        "gitBranch": "main",
        "gitRef": head,
    }
    received = fault.call(lambda: list(fault.server.received))
    assert {r.external_id: r.fields for r in received} == {
        shared: {"agentId": "claude-code", **git_context},
        local: {
            "agentId": "claude-code",
            "title": "x" * 97 + "...",
            "projectPath": str(repo),
            "projectName": "repo",
            "sourceCreatedAt": _row(own, local)["created_at"],
            **git_context,
        },
    }
    seen = fault.call(lambda: [(s.method, s.path, s.status) for s in fault.server.seen])
    assert ("POST", "/v1/traces/batch", 404) in seen
    assert {p for m, p, s in seen if m == "PUT" and s == 200} == {
        f"/v1/traces/{shared}",
        f"/v1/traces/{local}",
    }
    status = daemon_status(home)
    assert (status["sync"]["scope"], status["sync"]["mode"]) == ("all", "put")
    assert daemon.stop() == 0


def test_scope_shared_sends_only_what_the_cli_shared_once_it_is_shared(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """scope "shared" (the default): captured traces wait unsent and uncounted; the one the
    CLI shares reaches the server within seconds, with its git context only."""
    daemon, own, cli, repo = _hosted_daemon(daemons, home, tmp_path, fault, "shared")
    shared, _ = claude_session(home, repo, "Shared later")
    local, _ = claude_session(home, repo, "Never shared")
    wait_for(lambda: bool(_row(own, shared)) and bool(_row(own, local)))
    assert daemon_status(home)["sync"]["pending"] == 0
    _share(cli, shared, "https://www.traces.com/s/k1")
    wait_for(lambda: shared in fault.server.stored)
    assert set(fault.call(lambda: dict(fault.server.stored))) == {shared}
    assert fault.server.stored[shared] == {
        "agentId": "claude-code",
        "gitRemoteUrl": "https://github.com/Acme/App",
        "gitBranch": "main",
        "gitRef": git(repo, "rev-parse", "HEAD"),
    }
    status = daemon_status(home)["sync"]
    assert (status["scope"], status["pending"], status["failed"]) == ("shared", 0, 0)
    assert local not in fault.server.stored
    assert daemon.stop() == 0
