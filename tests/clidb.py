"""A Traces CLI database for tests: the real CLI 0.6.31's `traces` table (schema 16, WAL),
made with plain SQLite, and ways to look at it without changing it."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import Daemon
from tracesd import sqliteuri

#: how long a test waits for the daemon to fill the CLI's file (the product takes < 2 s)
DEADLINE_S = 20.0

#: docs/traces-cli-0.6.31.md (b), the columns this suite needs
TRACES_V16 = """
CREATE TABLE traces (
    id TEXT PRIMARY KEY, agent_id TEXT, title TEXT, preview TEXT, timestamp INTEGER,
    directory TEXT, source_path TEXT, remote_id TEXT, remote_url TEXT,
    git_remote_url TEXT, git_branch TEXT, git_ref TEXT,
    identity_scheme TEXT, created_at INTEGER NOT NULL
)
"""
#: a CLI from before its version 5: no git columns
TRACES_V4 = """
CREATE TABLE traces (
    id TEXT PRIMARY KEY, agent_id TEXT, title TEXT, timestamp INTEGER, directory TEXT,
    created_at INTEGER NOT NULL
)
"""


def make_cli_db(
    path: Path, rows: list[dict[str, Any]] | None = None, *, git_columns: bool = True
) -> Path:
    """A CLI database at `path` (its directory made 0700 as the CLI does), in WAL mode, with
    `rows` (dicts of column values; created_at filled in). Closed: no -wal left."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(TRACES_V16 if git_columns else TRACES_V4)
        conn.execute("CREATE TABLE store_metadata (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "INSERT INTO store_metadata VALUES ('api_endpoint', 'https://actions.traces.com')"
        )
        conn.execute("PRAGMA user_version = 16" if git_columns else "PRAGMA user_version = 4")
        insert_rows(conn, rows or [])
    finally:
        conn.close()
    return path


def insert_rows(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        values = {"agent_id": "claude-code", "created_at": 1, **row}
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        conn.execute(f"INSERT INTO traces ({columns}) VALUES ({marks})", list(values.values()))


def insert(path: Path, rows: list[dict[str, Any]]) -> None:
    """Insert rows as the CLI would: another connection, one transaction."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def reader(path: Path) -> sqlite3.Connection:
    """A connection that reads only and leaves no file behind (a `mode=ro` one would leave
    an empty -wal and a -shm beside a WAL database)."""
    conn = sqlite3.connect(sqliteuri.uri(path, "mode=rw"), uri=True, timeout=10)
    conn.execute("PRAGMA query_only = ON")
    return conn


def git_of(path: Path) -> dict[str, tuple[Any, Any, Any]]:
    """id -> (git_remote_url, git_branch, git_ref)."""
    conn = reader(path)
    try:
        rows = conn.execute("SELECT id, git_remote_url, git_branch, git_ref FROM traces")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}
    finally:
        conn.close()


def fingerprint(path: Path) -> tuple[str, tuple[str, ...], int]:
    """The file's bytes (hashed), the names in its directory, and its mtime."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, tuple(sorted(os.listdir(path.parent))), path.stat().st_mtime_ns


def facts(path: Path) -> tuple[Any, ...]:
    """What must never change: schema, user_version, journal mode, row ids."""
    conn = reader(path)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        ids = sorted(r[0] for r in conn.execute("SELECT id FROM traces"))
        return tuple(schema), version, mode, tuple(ids)
    finally:
        conn.close()


def own_db(home: Path, extra: str = "") -> Path:
    """Configure tracesd's own database outside ~/.traces (the CLI would adopt a file there),
    plus `extra` TOML; returns its path."""
    own = home / "own" / "traces.db"
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[storage]\ndb_path = "{own}"\n{extra}')
    return own


def wait_until(predicate: Callable[[], Any], daemon: Daemon, what: str) -> Any:
    """The first truthy value of `predicate()`, polled while the daemon runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert daemon.proc.poll() is None, daemon.log_path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {DEADLINE_S}s:\n{daemon.log_path.read_text()}")
