"""The Traces CLI bridge in a real `tracesd run`: at start, after captures, and soon after the
CLI writes (or creates) its file, watched, not polled (INTERFACE 5b). The CLI is played by
plain SQLite from this process; test_tracescli_real.py uses the real binary."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clidb import DEADLINE_S, fingerprint, git_of, insert, make_cli_db, own_db, wait_until
from tests.helpers import Daemon, claude_session, make_repo, query, tracesd


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", branch="feature/bridge")


def _cli_path(home: Path) -> Path:
    return home / ".local" / "share" / "traces" / "traces.db"


def _captured(own: Path, trace_id: str, daemon: Daemon) -> dict[str, Any]:
    rows = wait_until(
        lambda: query(own, "SELECT * FROM traces WHERE id = ?", trace_id), daemon, trace_id
    )
    return dict(rows[0])


def _status(home: Path) -> dict[str, Any]:
    out = tracesd(home, "status", "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)["traces_cli"]
    return result


def _filled(cli: Path, trace_id: str, row: dict[str, Any]) -> Callable[[], bool]:
    want = (row["git_remote_url"], row["git_branch"], row["git_ref"])
    return lambda: git_of(cli).get(trace_id) == want


def test_at_start_rows_already_in_the_cli_file_are_filled(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    own = own_db(home)
    trace_id, _ = claude_session(home, repo)
    cli = make_cli_db(_cli_path(home), [{"id": trace_id}, {"id": "not-ours"}])
    daemon = daemons(home)
    row = _captured(own, trace_id, daemon)
    assert row["git_branch"] == "feature/bridge"
    wait_until(_filled(cli, trace_id, row), daemon, "enrichment")
    assert git_of(cli)["not-ours"] == (None, None, None)
    status = _status(home)
    assert status["path"] == str(cli)
    assert (status["found"], status["has_git_columns"], status["last_error"]) == (True, True, None)
    assert status["rows_enriched"] == 1


def test_rows_the_cli_inserts_later_are_filled_soon(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    """A `traces list` that re-inserts a pruned row (NULL git) while the daemon runs: filled
    by the watch, without any capture or scan of ours."""
    own = own_db(home)
    cli = make_cli_db(_cli_path(home), [{"id": "other"}])
    trace_id, _ = claude_session(home, repo)
    daemon = daemons(home)
    daemon.wait_ready()
    row = _captured(own, trace_id, daemon)
    wait_until(lambda: _status(home)["found"], daemon, "the CLI file seen")
    inserted = time.monotonic()
    insert(cli, [{"id": trace_id}])
    wait_until(_filled(cli, trace_id, row), daemon, "enrichment of a re-inserted row")
    # The product's promise is 2 s; on a busy test machine only a generous bound is asserted.
    assert time.monotonic() - inserted < DEADLINE_S
    # Idle afterwards: our own writes' events do not keep the bridge opening the file.
    time.sleep(1.5)
    passes = _status(home)["passes"]
    time.sleep(2.0)
    assert _status(home)["passes"] == passes


def _captured_with_no_cli_file(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> tuple[Daemon, str, dict[str, Any]]:
    """A running daemon that captured one session and looked for the CLI's file (none):
    the daemon, the trace id, and our row of it."""
    own = own_db(home)
    trace_id, _ = claude_session(home, repo)
    daemon = daemons(home)
    daemon.wait_ready()
    row = _captured(own, trace_id, daemon)
    wait_until(lambda: _status(home)["found"] is False, daemon, "the CLI file looked for")
    return daemon, trace_id, row


def test_a_cli_file_created_after_start_is_filled(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    daemon, trace_id, row = _captured_with_no_cli_file(home, repo, daemons)
    assert not (home / ".local" / "share").exists()  # not even the data directory
    cli = make_cli_db(_cli_path(home), [{"id": trace_id}])
    wait_until(_filled(cli, trace_id, row), daemon, "enrichment of a new CLI file")


def test_a_legacy_file_that_appears_becomes_the_cli_file(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    """`~/.traces/traces.db` appearing moves the CLI to it (its legacy rule)."""
    daemon, trace_id, row = _captured_with_no_cli_file(home, repo, daemons)
    legacy = make_cli_db(home / ".traces" / "traces.db", [{"id": trace_id}])
    wait_until(_filled(legacy, trace_id, row), daemon, "enrichment of the legacy file")
    assert daemon.events("traces_cli.located")
    assert _status(home)["path"] == str(legacy)


def test_a_cli_directory_deleted_and_made_again_is_watched_again(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    """`traces reset`, then a new `traces list`: the directory the watch was on is gone, and
    a new one (often with the same inode number) takes its place."""
    own = own_db(home)
    trace_id, _ = claude_session(home, repo)
    cli = make_cli_db(_cli_path(home), [{"id": trace_id}])
    daemon = daemons(home)
    daemon.wait_ready()
    row = _captured(own, trace_id, daemon)
    wait_until(_filled(cli, trace_id, row), daemon, "the first enrichment")
    for _ in range(2):
        passes = _status(home)["passes"]
        _remove_tree(cli.parent)
        make_cli_db(cli, [])  # at once: before the bridge looks
        wait_until(_more_passes(home, passes), daemon, "the new file looked at")
        time.sleep(1.0)
        insert(cli, [{"id": trace_id}])
        wait_until(_filled(cli, trace_id, row), daemon, "enrichment in the new directory")


def _more_passes(home: Path, passes: int) -> Callable[[], bool]:
    return lambda: int(_status(home)["passes"]) > passes


def _remove_tree(path: Path) -> None:
    """rm -rf, again if a pass of the bridge opened the file meanwhile (SQLite then makes
    its -wal and -shm, and the directory is not empty when rmtree comes to it)."""
    for _ in range(50):
        try:
            shutil.rmtree(path)
            return
        except OSError:
            time.sleep(0.05)
    shutil.rmtree(path)


@pytest.fixture
def held_lock() -> Iterator[Callable[[Path], threading.Event]]:
    """Hold BEGIN IMMEDIATE on a file (a writing CLI) until the returned event is set."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def hold(path: Path) -> threading.Event:
        taken, release = threading.Event(), threading.Event()

        def run() -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            release.wait(60)
            conn.execute("COMMIT")
            conn.close()

        thread = threading.Thread(target=run)
        thread.start()
        assert taken.wait(10)
        threads.append((thread, release))
        return release

    yield hold
    for thread, release in threads:
        release.set()
        thread.join()


def test_a_busy_cli_is_retried_while_capture_flows(
    home: Path,
    repo: Path,
    daemons: Callable[..., Daemon],
    held_lock: Callable[[Path], threading.Event],
) -> None:
    own = own_db(home)
    first, _ = claude_session(home, repo)
    daemon = daemons(home)
    daemon.wait_ready()
    _captured(own, first, daemon)
    cli = make_cli_db(_cli_path(home), [])
    wait_until(lambda: _status(home)["found"], daemon, "the CLI file seen")
    second, _ = claude_session(home, repo, "Another one")
    insert(cli, [{"id": first}, {"id": second}])
    release = held_lock(cli)
    # While the CLI holds its lock: captures go on, status answers, the bridge waits.
    third, _ = claude_session(home, repo, "A third")
    row = _captured(own, third, daemon)
    daemon.wait_for_event("traces_cli.busy", timeout=DEADLINE_S)
    assert git_of_unlocked(cli, first) == (None, None, None)
    assert _status(home)["busy"] is True
    release.set()
    wait_until(_filled(cli, first, row), daemon, "enrichment after the lock was released")
    wait_until(_filled(cli, second, row), daemon, "enrichment after the lock was released")
    daemon.wait_for_event("traces_cli.busy_cleared", timeout=DEADLINE_S)


def git_of_unlocked(cli: Path, trace_id: str) -> tuple[Any, Any, Any]:
    """A read beside the held write lock (WAL: readers never wait)."""
    return git_of(cli)[trace_id]


def test_disabled_the_daemon_never_touches_the_cli_file(
    home: Path, repo: Path, daemons: Callable[..., Daemon]
) -> None:
    own = own_db(home, "[traces_cli]\nenabled = false\n")
    trace_id, _ = claude_session(home, repo)
    cli = make_cli_db(_cli_path(home), [{"id": trace_id}])
    before = fingerprint(cli)
    daemon = daemons(home)
    daemon.wait_ready()
    _captured(own, trace_id, daemon)
    claude_session(home, repo, "More")
    time.sleep(2.0)
    assert fingerprint(cli) == before
    assert _status(home)["enabled"] is False
    assert not [e for e in daemon.events() if str(e.get("event", "")).startswith("traces_cli.")]
