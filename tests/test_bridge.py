"""The Traces CLI bridge on real SQLite files: it fills NULL git columns of rows we captured
and nothing else (INTERFACE 5b). The daemon's timing is in test_bridge_daemon.py."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clidb import facts, fingerprint, git_of, make_cli_db
from tracesd import doctor
from tracesd.config import Config
from tracesd.models import Trace
from tracesd.status import text, wire
from tracesd.store.database import Store
from tracesd.tracescli.bridge import Bridge
from tracesd.tracescli.database import Busy, Connection

OURS = ("https://github.com/example/project", "feature/x", "a" * 40)


@pytest.fixture
def cli_path(home: Path) -> Path:
    """Where the CLI's rules put its file in the test HOME."""
    return home / ".local" / "share" / "traces" / "traces.db"


@pytest.fixture
def own_config(make_config: Callable[..., Config], home: Path) -> Callable[..., Config]:
    """Config with tracesd's own database outside ~/.traces (the CLI would adopt it)."""

    def make(**overrides: Any) -> Config:
        return make_config(storage__db_path=str(home / "own" / "traces.db"), **overrides)

    return make


async def _store(config: Config, traces: list[Trace]) -> Store:
    store = await Store.open(config.storage.db_path)
    for trace in traces:
        await store.upsert(trace)
    return store


async def _one_pass(config: Config, traces: list[Trace]) -> Bridge:
    """A bridge over our database holding `traces`, after one pass (the store closed)."""
    store = await _store(config, traces)
    try:
        bridge = Bridge(config, store)
        await bridge.once()
    finally:
        await store.close()
    return bridge


def _trace(trace_id: str, git: tuple[str | None, str | None, str | None] = OURS) -> Trace:
    return Trace(
        id=trace_id,
        agent_id="claude-code",
        git_remote_url=git[0],
        git_branch=git[1],
        git_ref=git[2],
        created_at=1,
        updated_at=1,
    )


async def test_fills_only_the_null_git_columns_of_rows_we_captured(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    make_cli_db(
        cli_path,
        [
            {"id": "all-null"},
            {"id": "cli-remote", "git_remote_url": "https://github.com/Org/X"},
            {"id": "not-ours"},
            {"id": "ours-no-git"},
        ],
    )
    before = facts(cli_path)
    config = own_config()
    bridge = await _one_pass(
        config,
        [_trace("all-null"), _trace("cli-remote"), _trace("ours-no-git", (None, None, None))],
    )
    assert git_of(cli_path) == {
        "all-null": OURS,
        "cli-remote": ("https://github.com/Org/X", OURS[1], OURS[2]),
        "not-ours": (None, None, None),
        "ours-no-git": (None, None, None),
    }
    assert facts(cli_path) == before  # no row, schema, user_version or journal mode change
    assert bridge.rows_enriched == 2
    assert (bridge.found, bridge.has_git_columns, bridge.last_error) == (True, True, None)


async def test_never_overwrites_a_value_the_cli_has(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    theirs = {"git_remote_url": "https://github.com/Org/Y", "git_branch": "b", "git_ref": "r"}
    make_cli_db(
        cli_path, [{"id": "full", **theirs}, {"id": "branch-only", "git_branch": "their-branch"}]
    )
    config = own_config()
    store = await _store(config, [_trace("full"), _trace("branch-only")])
    try:
        await Bridge(config, store).once()
    finally:
        await store.close()
    assert git_of(cli_path) == {
        "full": tuple(theirs.values()),
        "branch-only": (OURS[0], "their-branch", OURS[2]),
    }


def test_a_value_the_cli_writes_meanwhile_is_kept(cli_path: Path) -> None:
    """Between our read of the rows lacking git and our update, the CLI writes a branch: the
    update's WHERE sees it and leaves it."""
    make_cli_db(cli_path, [{"id": "t1"}])
    with Connection(cli_path) as conn:
        assert conn.lacking() == ["t1"]
        other = sqlite3.connect(cli_path, isolation_level=None)
        other.execute("UPDATE traces SET git_branch = 'cli', git_ref = 'c' WHERE id = 't1'")
        other.close()
        conn.fill([("t1", *OURS)])
    assert git_of(cli_path) == {"t1": (OURS[0], "cli", "c")}


async def test_never_creates_the_file(own_config: Callable[..., Config], cli_path: Path) -> None:
    config = own_config()
    bridge = await _one_pass(config, [_trace("t1")])
    assert not cli_path.parent.exists()
    assert bridge.found is False
    with pytest.raises(Exception, match="does not exist"):
        Connection(cli_path)
    assert not cli_path.parent.exists()


async def test_a_file_without_git_columns_is_left_byte_identical(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    make_cli_db(cli_path, [{"id": "t1"}], git_columns=False)
    before = fingerprint(cli_path)
    config = own_config()
    bridge = await _one_pass(config, [_trace("t1")])
    assert fingerprint(cli_path) == before
    assert (bridge.found, bridge.has_git_columns, bridge.rows_enriched) == (True, False, 0)


async def test_disabled_never_touches_the_file(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    make_cli_db(cli_path, [{"id": "t1"}])
    before = fingerprint(cli_path)
    config = own_config(traces_cli__enabled=False)
    store = await _store(config, [_trace("t1")])
    try:
        bridge = Bridge(config, store)
        await bridge.once()
        bridge.start()
        bridge.captured(["t1"])
        await asyncio.sleep(1.0)
        await bridge.close()
    finally:
        await store.close()
    assert fingerprint(cli_path) == before
    assert bridge.status().enabled is False


async def test_tracesd_own_database_is_never_taken_for_the_cli_one(
    make_config: Callable[..., Config], home: Path
) -> None:
    """`[storage] db_path` set to where the CLI's rules point (its default file): the
    bridge leaves tracesd's own file alone and says so."""
    config = make_config(storage__db_path=str(home / ".local" / "share" / "traces" / "traces.db"))
    store = await _store(config, [_trace("t1", (None, None, None))])
    try:
        bridge = Bridge(config, store)
        assert bridge.path == config.storage.db_path
        await bridge.once()
    finally:
        await store.close()
    assert bridge.rows_enriched == 0
    assert "tracesd's own database" in (bridge.last_error or "")


@pytest.fixture
def held_lock(cli_path: Path) -> Iterator[Callable[[float], threading.Thread]]:
    """Hold BEGIN IMMEDIATE on the CLI's file (as a writing CLI does) for some seconds."""
    threads: list[threading.Thread] = []

    def hold(seconds: float) -> threading.Thread:
        taken = threading.Event()

        def run() -> None:
            conn = sqlite3.connect(cli_path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
            conn.close()

        thread = threading.Thread(target=run)
        thread.start()
        taken.wait(10)
        threads.append(thread)
        return thread

    yield hold
    for thread in threads:
        thread.join()


def test_a_busy_cli_makes_a_write_give_up_at_once(
    cli_path: Path, held_lock: Callable[[float], threading.Thread]
) -> None:
    make_cli_db(cli_path, [{"id": "t1"}])
    held_lock(1.5)
    with Connection(cli_path) as conn:
        started = time.monotonic()
        with pytest.raises(Busy):
            conn.fill([("t1", *OURS)])
        assert time.monotonic() - started < 1.0  # never the CLI's 5 s, let alone its 15


async def test_a_busy_cli_is_retried_later(
    own_config: Callable[..., Config],
    cli_path: Path,
    held_lock: Callable[[float], threading.Thread],
) -> None:
    make_cli_db(cli_path, [{"id": "t1"}])
    config = own_config()
    store = await _store(config, [_trace("t1")])
    try:
        bridge = Bridge(config, store)
        started = time.monotonic()
        held_lock(1.0)
        await bridge.once()
        waited = time.monotonic() - started
    finally:
        await store.close()
    assert git_of(cli_path) == {"t1": OURS}
    assert waited >= 0.9


def test_doctor_reports_the_cli_database_and_what_still_lacks_git(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    config = own_config()
    asyncio.run(_close(_store(config, [_trace("t1"), _trace("t2"), _trace("t3")])))
    make_cli_db(
        cli_path,
        [{"id": "t1"}, {"id": "t2", "git_branch": "b", "git_ref": "r", "git_remote_url": "u"}],
    )
    before = fingerprint(cli_path)
    [check] = [c for c in doctor.run(config) if c.name == "traces cli"]
    assert check.status == doctor.WARN
    assert str(cli_path) in check.detail
    assert "2 of our 3 traces" in check.detail
    assert "1 of them still lack" in check.detail
    assert fingerprint(cli_path) == before  # doctor never writes
    lines = doctor.as_text([check])
    assert any("traces cli" in line for line in lines)


def test_doctor_says_when_there_is_no_cli_database(
    own_config: Callable[..., Config], cli_path: Path
) -> None:
    [check] = [c for c in doctor.run(own_config()) if c.name == "traces cli"]
    assert check.status == doctor.OK
    assert "no Traces CLI database" in check.detail
    assert not cli_path.parent.exists()


def test_status_text_has_one_line_for_the_cli_database() -> None:
    cli = {
        "enabled": True,
        "path": "/h/.local/share/traces/traces.db",
        "found": True,
        "has_git_columns": True,
        "rows_enriched": 7,
        "last_error": None,
    }
    [line] = [
        line for line in text.status(wire.parse(_status_doc(cli))) if line.startswith("cli db")
    ]
    assert "/h/.local/share/traces/traces.db: 7 rows given git context" in line


async def _close(store: Any) -> None:
    await (await store).close()


def _status_doc(cli: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "pid": 1,
        "uptime_s": 1.0,
        "db_path": "/x",
        "agents": [],
        "traces": {"total": 0, "by_agent": {}},
        "capture": {
            "captured_total": 0,
            "errors_total": 0,
            "errors_by_reason": {},
            "last_capture_at": None,
        },
        "watcher": {"roots_watched": 0, "overflows": 0, "rescans": 0, "degraded": []},
        "sync": {"enabled": False, "pending": 0},
        "traces_cli": cli,
    }


@pytest.mark.parametrize("where", ["database", "-wal"])
async def test_a_fifo_at_the_cli_path_is_refused_without_blocking_and_said(
    own_config: Callable[..., Config], cli_path: Path, where: str
) -> None:
    """A FIFO as the CLI's database (or its `-wal`) would block SQLite's open until a writer
    came: refused unread, the pass ends at once, status says why; nothing is created."""
    if where == "database":
        cli_path.parent.mkdir(parents=True)
        os.mkfifo(cli_path)
    else:
        make_cli_db(cli_path, [{"id": "t1"}])
        os.mkfifo(cli_path.with_name(cli_path.name + "-wal"))
    bridge = await asyncio.wait_for(_one_pass(own_config(), [_trace("t1")]), timeout=30)
    assert bridge.rows_enriched == 0
    assert "fifo" in (bridge.last_error or "").lower()
    assert sorted(p.name for p in cli_path.parent.iterdir()) == sorted(
        [cli_path.name] + ([] if where == "database" else [cli_path.name + "-wal"])
    )
