"""The bridge against the real Traces CLI (pinned; `make traces-cli`): after tracesd ran,
`traces show <id> --json` answers the branch and commit tracesd captured, which the CLI
alone never records (docs/traces-cli-0.6.31.md (c), (d)). Temp HOME only."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clidb import DEADLINE_S, git_of, own_db, wait_until
from tests.helpers import Daemon, claude_session, fixture_home, make_repo, query, tracesd
from tests.tracescli import require_traces_cli


@pytest.fixture
def cli() -> Callable[..., Any]:
    binary = require_traces_cli()

    def run(home: Path, *args: str) -> Any:
        env = {"PATH": os.defpath, "HOME": str(home), "TERM": "dumb"}  # env -i PATH HOME
        out = subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)["data"]

    return run


@pytest.fixture
def session(tmp_path: Path, home: Path) -> tuple[str, Path]:
    """The fixtures HOME plus one Claude session in a real git repository."""
    fixture_home(home)
    repo = make_repo(tmp_path / "repo", branch="feature/e2e")
    trace_id, _ = claude_session(home, repo, "Wire the bridge")
    return trace_id, repo


def _ours(own: Path, trace_id: str) -> dict[str, Any]:
    [row] = query(own, "SELECT * FROM traces WHERE id = ?", trace_id)
    return row


def _assert_shown(cli: Callable[..., Any], home: Path, row: dict[str, Any]) -> None:
    shown = cli(home, "show", row["id"], "--json")["trace"]
    assert shown["gitBranch"] == row["git_branch"] == "feature/e2e"
    assert shown["gitRef"] == row["git_ref"]
    assert len(shown["gitRef"]) == 40


def test_traces_show_answers_branch_and_commit_after_the_daemon_ran(
    home: Path,
    session: tuple[str, Path],
    cli: Callable[..., Any],
    daemons: Callable[..., Daemon],
) -> None:
    """The daemon runs first; `traces list` then creates the CLI's file: filled soon."""
    trace_id, _ = session
    own = own_db(home)
    daemon = daemons(home)
    daemon.wait_ready()
    row = _ours(own, trace_id)
    listed = cli(home, "list", "--json")["traces"]
    assert trace_id in {t["id"] for t in listed}
    cli_db = home / ".local" / "share" / "traces" / "traces.db"
    want = (row["git_remote_url"], row["git_branch"], row["git_ref"])
    wait_until(
        lambda: git_of(cli_db).get(trace_id, (None,))[1:] == want[1:],
        daemon,
        "the CLI's file filled",
    )
    _assert_shown(cli, home, row)
    daemon.wait_for_event("traces_cli.enriched", timeout=DEADLINE_S)


def test_tracesd_scan_fills_a_cli_file_that_exists(
    home: Path, session: tuple[str, Path], cli: Callable[..., Any]
) -> None:
    trace_id, _ = session
    own = own_db(home)
    cli(home, "list", "--json")  # the CLI's file, with NULL branch and commit
    out = tracesd(home, "scan", "--json")
    assert out.returncode == 0, out.stderr
    _assert_shown(cli, home, _ours(own, trace_id))
