"""Both tools on one machine: tracesd beside the pinned real Traces CLI (issue 11).

Each test is a temp HOME holding agent sessions, tracesd (one-shot commands or a real
`tracesd run`) and the real CLI (tests/clihome.py). The contract: INTERFACE.md 2 (tracesd's
own database, nothing under ~/.traces), 5 (earlier installs taken over), 5b (the CLI's
database found by its rules, its NULL git columns filled, never a row inserted or deleted);
the CLI's behaviour: docs/traces-cli-0.6.31.md. `make compat` runs only these
(`pytest -m traces_cli`); without the binary they skip (fail under CI).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.clihome import (
    EARLIER_GONE_SESSION,
    EARLIER_REPO_SESSION,
    WRITERS,
    TracesCli,
    claude,
    claude_continue,
    cli_default_db,
    cursor_composer,
    earlier_tracesd_home,
    legacy_db,
    private_objects,
    tracesd_db,
    tracesd_listed,
    tracesd_ok,
    tracesd_rows,
    user_version,
    wait_for,
)
from tests.helpers import FIXTURE_TRACES, Daemon, fixture_home, git, make_repo, query
from tests.tracescli import require_traces_cli

pytestmark = pytest.mark.traces_cli

FIXTURE_IDS = frozenset(trace_id for _, trace_id in FIXTURE_TRACES)
#: fixture traces the CLI 0.6.31 does not find (docs/traces-cli-0.6.31.md (c))
NOT_FOUND_BY_THE_CLI = frozenset(
    {
        "5a1e3c7d-2b4f-4a6e-8c0d-9e1f2a3b4c5d",  # claude-code: opens with another's summary
        "4b7e2f10-8c1d-4e2a-9b3c-5d6e7f8a9b0c",  # gemini-cli
        "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f",  # gemini-cli (legacy layout)
        "3c5e7a9b-0d2f-4a6c-8e1b-3d5f7a9c0e2b",  # cursor CLI store.db
    }
)
GIT_COLUMNS = ("git_remote_url", "git_branch", "git_ref")
HOUR_AGO = time.time() - 3600


@pytest.fixture
def cli(home: Path) -> TracesCli:
    return TracesCli(require_traces_cli(), home)


def started(daemons: Callable[..., Daemon], home: Path) -> Daemon:
    """A real `tracesd run` that has finished its startup scan, on its own database."""
    daemon = daemons(home)
    daemon.wait_ready()
    assert tracesd_db(home).exists(), (
        f"tracesd's database is not at {tracesd_db(home)} (INTERFACE 2); "
        f"~/.traces holds {sorted(p.name for p in (home / '.traces').glob('*'))}"
    )
    return daemon


def captured(home: Path, ids: set[str] | frozenset[str]) -> bool:
    return ids <= tracesd_rows(home).keys()


def enriched(cli: TracesCli, trace_id: str, db: Path | None = None) -> dict[str, Any] | None:
    """The CLI's row once tracesd filled its commit, else None."""
    row = cli.rows(db).get(trace_id)
    return row if row is not None and row["git_ref"] is not None else None


def assert_rows_kept(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    """The CLI's rows as the CLI left them: none added or removed, no column changed but a
    git column tracesd filled where it was NULL."""
    assert after.keys() == before.keys(), (
        f"rows added {sorted(after.keys() - before.keys())}, "
        f"removed {sorted(before.keys() - after.keys())}"
    )
    for trace_id, row in before.items():
        for column, value in row.items():
            if column in GIT_COLUMNS and value is None:
                continue
            assert after[trace_id][column] == value, (trace_id, column)


# -- both tools through a `traces list` cycle -----------------------------------------------


def test_a_traces_list_cycle_loses_no_row_in_either_database_and_tracesd_restarts(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon]
) -> None:
    fixture_home(home)
    repo = make_repo(home / "src" / "app", branch="feature/cycle")
    ours = {claude(home, repo, f"Task {i}", mtime=HOUR_AGO + 60 * i) for i in range(12)}
    everything = FIXTURE_IDS | ours
    daemon = started(daemons, home)
    wait_for("tracesd captured every session", lambda: captured(home, everything))

    cli.list()  # keeps the 10 newest Claude sessions
    first = cli.rows()
    assert 0 < len(ours & first.keys()) < len(ours)
    for trace_id in ours & first.keys():
        wait_for(f"{trace_id} enriched in the CLI's database", partial(enriched, cli, trace_id))
    assert_rows_kept(first, cli.rows())

    newest = claude(home, repo, "Task new")
    everything |= {newest}
    wait_for("tracesd captured the new session", lambda: captured(home, {newest}))
    cli.list()  # the agent's sources changed: it rescans and prunes
    second = cli.rows()
    assert newest in second
    assert first.keys() - second.keys(), "the second traces list pruned nothing"
    wait_for("the new session enriched in the CLI's database", lambda: enriched(cli, newest))
    assert_rows_kept(second, cli.rows())
    assert everything <= tracesd_rows(home).keys(), "tracesd lost a captured trace"
    assert daemon.stop() == 0

    # tracesd restarts fine after the cycle, and still has every trace
    tracesd_ok(home, "scan", "--json")
    assert everything <= tracesd_listed(home).keys()
    assert started(daemons, home).stop() == 0
    assert newest in {t["id"] for t in cli.list()}


def test_the_cli_database_path_never_changes_because_of_tracesd(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon]
) -> None:
    fixture_home(home)
    path = cli.status_path()
    assert path == cli_default_db(home)
    tracesd_ok(home, "scan", "--json")
    assert cli.status_path() == path
    cli.list()
    assert started(daemons, home).stop() == 0
    assert cli.status_path() == path
    assert path.exists()
    assert not (home / ".traces").exists(), "tracesd created ~/.traces"


# -- enrichment ----------------------------------------------------------------------------


def test_traces_show_answers_the_branch_and_commit_tracesd_captured_also_after_a_reindex(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon]
) -> None:
    repo = make_repo(home / "src" / "web", branch="feature/bridge", commits=2)
    head = git(repo, "rev-parse", "HEAD")
    target = claude(home, repo, "Fix the pager", mtime=HOUR_AGO)
    started(daemons, home)
    ours = wait_for("tracesd captured the session", lambda: tracesd_rows(home).get(target))
    assert (ours["git_branch"], ours["git_ref"]) == ("feature/bridge", head)

    cli.list()
    wait_for("tracesd filled the CLI's row", lambda: enriched(cli, target))
    shown = cli.show(target)
    assert (shown.get("gitBranch"), shown.get("gitRef")) == ("feature/bridge", head)

    # re-index: ten newer sessions push it out of the CLI's 10 newest, the next list prunes it
    other = make_repo(home / "src" / "other")
    for i in range(10):
        claude(home, other, f"Other {i}", mtime=HOUR_AGO + 60 * (i + 1))
    cli.list()
    assert target not in cli.rows(), "the CLI did not prune the session"
    # it comes back as the newest: tracesd reads it first, so only the CLI's writing of its
    # file can prompt tracesd to fill the re-inserted row (NULL git columns again)
    before = tracesd_rows(home)[target]
    claude_continue(home, repo, target, "Now add a test for the pager")
    wait_for(
        "tracesd read the session again",
        lambda: tracesd_rows(home)[target]["timestamp"] != before["timestamp"],
    )
    cli.list()
    assert target in cli.rows(), "the CLI did not re-insert the session"
    wait_for("tracesd filled the re-inserted row", lambda: enriched(cli, target))
    shown = cli.show(target)
    assert (shown.get("gitBranch"), shown.get("gitRef")) == ("feature/bridge", head)


def test_traces_doctor_finds_nothing_wrong_with_its_database_after_tracesd_ran(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon]
) -> None:
    fixture_home(home)
    repo = make_repo(home / "src" / "app", branch="feature/doctor")
    target = claude(home, repo, "Check the doctor")
    tracesd_ok(home, "scan", "--json")
    check = cli.doctor_local_database()
    assert check["status"] == "warn", check
    assert "not created yet" in check["message"], check

    cli.list()
    daemon = started(daemons, home)
    wait_for("tracesd filled the CLI's row", lambda: enriched(cli, target))
    check = cli.doctor_local_database()
    assert check["status"] == "pass", check
    assert daemon.stop() == 0
    assert cli.doctor_local_database()["status"] == "pass"


# -- the legacy path, and earlier tracesd installs -------------------------------------------


def test_a_legacy_path_user_keeps_their_file_and_tracesd_enriches_it_there(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon]
) -> None:
    fixture_home(home)
    repo = make_repo(home / "src" / "app", branch="feature/legacy")
    head = git(repo, "rev-parse", "HEAD")
    target = claude(home, repo, "Legacy user session")
    legacy = legacy_db(home)
    cli.list(env={"TRACES_EVENTSTORE": str(legacy)})  # the CLI's own file, at the legacy path
    assert cli.status_path() == legacy  # ... which it adopts from then on
    before = cli.rows(legacy)
    assert target in before

    daemon = started(daemons, home)
    wait_for("tracesd captured every session", lambda: captured(home, FIXTURE_IDS | {target}))
    wait_for(
        "tracesd filled the CLI's row in its legacy file", lambda: enriched(cli, target, legacy)
    )
    assert_rows_kept(before, cli.rows(legacy))
    assert private_objects(legacy) == []
    assert user_version(legacy) == 16
    assert daemon.stop() == 0

    assert cli.status_path() == legacy
    assert not cli_default_db(home).exists()
    shown = cli.show(target)
    assert (shown.get("gitBranch"), shown.get("gitRef")) == ("feature/legacy", head)


@pytest.mark.parametrize("adopted", [False, True], ids=["untouched", "adopted-by-the-cli"])
def test_an_earlier_tracesd_file_is_taken_over_with_nothing_lost(
    cli: TracesCli, home: Path, daemons: Callable[..., Daemon], adopted: bool
) -> None:
    legacy = earlier_tracesd_home(home)
    old = {r["id"]: r for r in query(legacy, "SELECT * FROM traces")}
    assert EARLIER_GONE_SESSION in old
    cli_rows: dict[str, dict[str, Any]] = {}
    if adopted:
        cli.list()  # migrates it to the CLI's schema and prunes what it does not find
        cli_rows = cli.rows(legacy)
        assert user_version(legacy) == 16
        assert cli_rows
    kept = old.keys() & cli_rows.keys() if adopted else old.keys()

    daemon = started(daemons, home)
    ours = tracesd_rows(home)
    missing = (kept | FIXTURE_IDS | {EARLIER_REPO_SESSION}) - ours.keys()
    assert not missing, f"lost in the takeover: {sorted(missing)}"
    for trace_id in kept:
        was, now = old[trace_id], ours[trace_id]
        assert (now["agent_id"], now["git_branch"], now["git_ref"]) == (
            was["agent_id"],
            was["git_branch"],
            was["git_ref"],
        ), trace_id
    if adopted:
        assert private_objects(legacy) == [], "tracesd's tables or triggers left in the CLI's file"
        assert user_version(legacy) == 16
        assert_rows_kept(cli_rows, cli.rows(legacy))
    else:
        assert not legacy.exists(), "the earlier file was not moved to tracesd's path"
    assert daemon.stop() == 0

    # afterwards both tools work: the CLI lists, its doctor is content, tracesd restarts
    cli.list()
    assert cli.doctor_local_database()["status"] == "pass"
    tracesd_ok(home, "scan", "--json")
    assert kept | FIXTURE_IDS <= tracesd_listed(home).keys()


# -- the same sessions, the same ids -----------------------------------------------------------


def test_ids_agree_for_every_trace_both_tools_find(cli: TracesCli, home: Path) -> None:
    """The fixtures and 20 hand-written sessions: the CLI's rows (without its Claude subagent
    rows, which tracesd folds into their parent) are tracesd's traces, id for id, but for the
    fixtures the CLI does not find."""
    fixture_home(home)
    repo = make_repo(home / "src" / "ids")
    for agent, write in WRITERS.items():
        for i in range(5):
            write(home, repo, f"{agent} task {i}", mtime=HOUR_AGO + 60 * i)
    cli.list()
    theirs = {t["id"]: t["agent_id"] for t in cli.rows().values() if t["related_to"] is None}
    tracesd_ok(home, "scan", "--json")
    ours = {tid: t["agent_id"] for tid, t in tracesd_listed(home).items()}
    assert len(ours) == len(FIXTURE_IDS) + 20
    assert theirs == {tid: a for tid, a in ours.items() if tid not in NOT_FOUND_BY_THE_CLI}


def test_a_cursor_composer_known_by_its_workspace_uris_gets_the_directory_the_cli_finds(
    cli: TracesCli, home: Path
) -> None:
    repo = make_repo(home / "src" / "my app#1", branch="feature/uris")
    composer = cursor_composer(home, repo, "Fix the pager")
    [listed] = [t for t in cli.list() if t["id"] == composer]
    tracesd_ok(home, "scan", "--json")
    ours = tracesd_listed(home)[composer]
    assert ours["directory"] == listed["directory"] == str(repo)
    assert (ours["git_branch"], ours["git_ref"]) == ("feature/uris", git(repo, "rev-parse", "HEAD"))
