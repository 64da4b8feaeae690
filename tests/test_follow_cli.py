"""Message follow beside the real Traces CLI, both pointed at a real `tracesd server` (issue 14).

Whichever tool uploads a session's messages first, the other adds nothing: tracesd makes
the CLI's ids from the same session (idScheme v2), so the CLI's `share` and `refresh` after
tracesd, and tracesd after the CLI's `share`, only send again what the server already holds.
The server's messages are read back through the API (`GET .../messages?includeParts=true`)
and compared whole: same messages, same parts, same order, nothing more.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clihome import TracesCli, claude_continue, wait_for
from tests.cliserver import PROJECT, SESSION_CWD, TracesdServer, claude_home
from tests.helpers import Daemon, isolated_env, query, tracesd
from tests.tracescli import require_traces_cli
from tracesd.messages import transcript
from tracesd.models import Trace

pytestmark = pytest.mark.traces_cli

KEY = "trk_follow_compat_key"
StartDaemon = Callable[..., Daemon]


@pytest.fixture(scope="module")
def binary() -> Path:
    return require_traces_cli()


@pytest.fixture(scope="module")
def server(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracesdServer]:
    started = TracesdServer(tmp_path_factory.mktemp("server"), [KEY])
    yield started
    started.kill()


def start_tracesd(daemons: StartDaemon, home: Path, server: TracesdServer, scope: str) -> Daemon:
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[sync]\napi_url = "{server.base}"\nscope = "{scope}"\ninterval_s = 0.5\n'
        "max_backoff_s = 1\n[agents]\nenabled = ['claude-code']\n"
    )
    # TRACES_HTTP_URL as for the CLI: tracesd finds the CLI's database for that server
    # (the CLI names it after the server; docs/traces-cli-0.6.31.md (a))
    env = isolated_env(home, TRACES_API_KEY=KEY, TRACES_HTTP_URL=server.base)
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    return daemon


def cli_ok(cli: TracesCli, *args: str) -> dict[str, Any]:
    done = cli.run(*args, "--key", KEY, "--json")
    assert done.returncode == 0, f"traces {' '.join(args)}:\n{done.stdout}{done.stderr}"
    answer = json.loads(done.stdout)
    assert answer.get("ok") is True, answer
    data: dict[str, Any] = answer["data"]
    return data


def entries(home: Path, session_id: str) -> int:
    """How many batch entries the whole session reads into."""
    path = home / PROJECT / f"{session_id}.jsonl"
    return len(transcript.messages(Trace(session_id, "claude-code", source_path=str(path))))


def followed(home: Path, session_id: str) -> tuple[int, int] | None:
    """(sent, pending) of a followed trace, from tracesd's database."""
    rows = query(
        home / ".local" / "share" / "tracesd" / "traces.db",
        "SELECT f.sent_total AS sent, (SELECT COUNT(*) FROM tracesd_message_outbox q"
        " WHERE q.trace_id = f.trace_id) AS pending"
        " FROM tracesd_message_follow f WHERE f.trace_id = ?",
        session_id,
    )
    return (rows[0]["sent"], rows[0]["pending"]) if rows else None


def test_tracesd_uploads_first_and_the_clis_share_adds_nothing(
    daemons: StartDaemon, binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    home = claude_home(tmp_path / "home", session)
    daemon = start_tracesd(daemons, home, server, "all")
    total = entries(home, session)
    wait_for("tracesd's upload", lambda: followed(home, session) == (total, 0) or None)
    before = server.messages(session, KEY)
    assert sum(len(m["parts"]) for m in before) == total

    cli = TracesCli(binary, home, api=server.base)
    cli_ok(cli, "share", "--trace-id", session)

    assert server.messages(session, KEY) == before
    assert daemon.stop() == 0


def test_the_cli_shares_first_tracesd_adds_nothing_and_refresh_then_sends_nothing_new(
    daemons: StartDaemon, binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    home = claude_home(tmp_path / "home", session)
    cli = TracesCli(binary, home, api=server.base)
    cli_ok(cli, "share", "--trace-id", session)
    shared = server.messages(session, KEY)

    daemon = start_tracesd(daemons, home, server, "shared")
    total = entries(home, session)
    wait_for("tracesd's follow", lambda: followed(home, session) == (total, 0) or None)
    assert server.messages(session, KEY) == shared
    status = json.loads(tracesd(home, "status", "--json", env=isolated_env(home)).stdout)
    assert status["sync"]["messages"]["followed"] == 1

    claude_continue(home, SESSION_CWD, session, "Also cover the dry run in the tests")
    wait_for("the new messages", lambda: followed(home, session) == (total + 2, 0) or None)
    grown = server.messages(session, KEY)
    assert len(grown) == len(shared) + 2
    assert grown[: len(shared)] == shared

    refreshed = cli_ok(cli, "refresh", "--trace-id", session)
    assert refreshed.get("appended") == 2  # the CLI sends its two new ones again...
    assert server.messages(session, KEY) == grown  # ...which the server already holds
    assert daemon.stop() == 0
