"""The bridge copies the Traces CLI's share state into tracesd's database (issue 12): a row
the CLI shared (`remote_url` set; `shared_url` in older layouts) makes our trace's
`shared_url` that URL; an unshare clears it; a row the CLI pruned changes nothing. Real
CLI-layout SQLite files (tests/clidb.py); the daemon's timing is a real `tracesd run`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clidb import make_cli_db, own_db, wait_until
from tests.helpers import Daemon, claude_session, isolated_env, query
from tracesd.config import Config
from tracesd.models import Trace
from tracesd.store.database import Store
from tracesd.tracescli.bridge import Bridge

URL = "https://www.traces.com/s/jx7abc"
StartDaemon = Callable[..., Daemon]


@pytest.fixture
def cli_path(home: Path) -> Path:
    return home / ".local" / "share" / "traces" / "traces.db"


def _trace(trace_id: str, shared_url: str | None = None) -> Trace:
    return Trace(id=trace_id, agent_id="claude-code", shared_url=shared_url, created_at=1)


async def _pass(config: Config, traces: list[Trace]) -> tuple[dict[str, Any], Bridge, list[int]]:
    """One bridge pass over our database holding `traces`: our shared_url per id after it,
    the bridge, and how often it said the share state changed."""
    store = await Store.open(config.storage.db_path)
    try:
        for trace in traces:
            await store.upsert(trace)
        calls: list[int] = []
        bridge = Bridge(config, store, on_shared=lambda: calls.append(1))
        await bridge.once()
        rows = await store.query("SELECT id, shared_url FROM traces")
        return {r[0]: r[1] for r in rows}, bridge, calls
    finally:
        await store.close()


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _set(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


async def test_a_row_the_cli_shared_marks_our_trace_shared_and_an_unshare_clears_it(
    make_config: Callable[..., Config], home: Path, cli_path: Path
) -> None:
    config = make_config(storage__db_path=str(home / "own" / "traces.db"))
    make_cli_db(
        cli_path,
        [
            {"id": "shared", "remote_url": URL},
            {"id": "unshared"},
            {"id": "reshared", "remote_url": URL + "-new"},
            {"id": "empty", "remote_url": ""},
            {"id": "not-ours", "remote_url": URL},
        ],
    )
    ours = [
        _trace("shared"),
        _trace("unshared", URL),  # the CLI unshared it since
        _trace("reshared", URL),
        _trace("empty", URL),
        _trace("pruned", URL),  # the CLI's cache dropped its row: nothing known
        _trace("never"),
    ]
    before = _bytes(cli_path)
    shared, bridge, calls = await _pass(config, ours)
    assert shared == {
        "shared": URL,
        "unshared": None,
        "reshared": URL + "-new",
        "empty": None,
        "pruned": URL,
        "never": None,
    }
    assert "not-ours" not in shared
    assert bridge.status().shares_copied == 4
    assert calls == [1]
    assert _bytes(cli_path) == before  # read, never written: nothing of it changed

    # nothing changed since: a second pass changes nothing and says nothing
    shared_again, bridge, calls = await _pass(config, [])
    assert shared_again == shared
    assert (bridge.status().shares_copied, calls) == (0, [])


@pytest.mark.parametrize(
    ("columns", "row", "expected"),
    [
        # a layout from before the CLI renamed the column: shared_url
        (
            "shared_url TEXT, git_remote_url TEXT, git_branch TEXT, git_ref TEXT",
            {"shared_url": URL},
            URL,
        ),
        # a file the CLI migrated keeps the old column beside the one it writes: remote_url
        (
            "shared_url TEXT, remote_url TEXT",
            {"shared_url": URL + "-stale", "remote_url": None},
            None,
        ),
        ("shared_url TEXT, remote_url TEXT", {"shared_url": None, "remote_url": URL}, URL),
        # no share column at all: nothing known, ours kept
        ("title TEXT", {"title": "x"}, "kept"),
    ],
    ids=["old-shared_url", "migrated-unshared", "migrated-shared", "no-column"],
)
async def test_the_share_column_is_remote_url_else_the_older_shared_url(
    make_config: Callable[..., Config],
    home: Path,
    cli_path: Path,
    columns: str,
    row: dict[str, Any],
    expected: str | None,
) -> None:
    config = make_config(storage__db_path=str(home / "own" / "traces.db"))
    cli_path.parent.mkdir(parents=True, mode=0o700)
    conn = sqlite3.connect(cli_path, isolation_level=None)
    try:
        conn.execute(f"CREATE TABLE traces (id TEXT PRIMARY KEY, {columns})")
        names = ", ".join(["id", *row])
        marks = ", ".join("?" * (len(row) + 1))
        conn.execute(f"INSERT INTO traces ({names}) VALUES ({marks})", ["t", *row.values()])
    finally:
        conn.close()
    shared, _, _ = await _pass(config, [_trace("t", "kept")])
    assert shared["t"] == expected


def test_the_daemon_copies_a_share_and_an_unshare_by_the_cli_within_seconds(
    daemons: StartDaemon, home: Path, tmp_path: Path, cli_path: Path
) -> None:
    """A real `tracesd run`: the CLI shares a captured trace (a write to its file), our
    trace's shared_url follows; it unshares, ours is cleared. Status counts the copies."""
    own = own_db(home)
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = daemons(home, env=isolated_env(home))
    daemon.wait_ready()
    session_id, _ = claude_session(home, tmp_path, "Share me")
    make_cli_db(cli_path, [{"id": session_id}])

    def ours() -> Any:
        rows = query(own, "SELECT shared_url FROM traces WHERE id = ?", session_id)
        return rows[0]["shared_url"] if rows else "not captured"

    wait_until(lambda: ours() is None, daemon, "the capture")

    _set(cli_path, "UPDATE traces SET remote_url = ? WHERE id = ?", URL, session_id)
    wait_until(lambda: ours() == URL, daemon, "the share copied")
    _set(cli_path, "UPDATE traces SET remote_url = NULL WHERE id = ?", session_id)
    wait_until(lambda: ours() is None, daemon, "the unshare copied")
    assert len(daemon.events("traces_cli.shares_copied")) >= 2
    assert daemon.stop() == 0
