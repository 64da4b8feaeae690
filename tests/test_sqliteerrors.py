"""One reading of SQLite's errors for every module that talks to SQLite: by result code
first, by message only for the errors Python raises without one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracesd.errors import StoreError
from tracesd.server.sqlite_layout import translated
from tracesd.sqliteerrors import Fault, fault


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "a.db", timeout=0, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    yield conn
    conn.close()


def error_of(conn: sqlite3.Connection, sql: str) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as caught:
        conn.execute(sql)
    return caught.value


def test_a_lock_held_by_another_connection_is_busy(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    other = sqlite3.connect(tmp_path / "a.db", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert fault(error_of(conn, "BEGIN IMMEDIATE")) is Fault.BUSY
    finally:
        other.close()


def test_a_full_database_is_full(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 2")
    assert fault(error_of(conn, "INSERT INTO t SELECT zeroblob(100000)")) is Fault.FULL


def test_a_file_that_is_no_database_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 512)
    junk = sqlite3.connect(tmp_path / "junk.db")
    try:
        assert fault(error_of(junk, "SELECT * FROM sqlite_master")) is Fault.CORRUPT
    finally:
        junk.close()


def test_the_code_decides_not_words_in_the_message(conn: sqlite3.Connection) -> None:
    """A missing table named `locked` is no lock: nothing to retry (a substring match said
    busy, and the caller would have retried a query that can never succeed)."""
    missing = error_of(conn, "SELECT * FROM locked_busy_malformed")
    assert fault(missing) is Fault.OTHER
    with pytest.raises(StoreError) as caught, translated(Path("x.db")):
        raise missing
    assert not caught.value.busy


@pytest.mark.parametrize(
    ("message", "meaning"),
    [
        ("database is locked", Fault.BUSY),
        ("database table is locked", Fault.BUSY),
        ("database or disk is full", Fault.FULL),
        ("database disk image is malformed", Fault.CORRUPT),
        ("file is not a database", Fault.CORRUPT),
        ("Cannot operate on a closed database.", Fault.OTHER),
    ],
)
def test_an_error_without_a_code_is_read_by_its_message(message: str, meaning: Fault) -> None:
    assert fault(sqlite3.OperationalError(message)) is meaning
