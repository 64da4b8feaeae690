"""The Traces CLI's database as the benchmarks lay it out: its `traces` table as the CLI
0.6.31 has it (docs/traces-cli-0.6.31.md (b), the columns that matter here), in WAL mode at
its schema 16, with rows the CLI inserted without git context."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

TRACES_TABLE = """
CREATE TABLE traces (
    id TEXT PRIMARY KEY, agent_id TEXT, title TEXT, preview TEXT, timestamp INTEGER,
    directory TEXT, source_path TEXT, remote_id TEXT, remote_url TEXT,
    git_remote_url TEXT, git_branch TEXT, git_ref TEXT, identity_scheme TEXT,
    created_at INTEGER NOT NULL
)
"""


def create(path: Path, ids: Iterable[str] = ()) -> Path:
    """A new CLI database at `path` (its directory 0700, as the CLI makes it), with `ids`."""
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(TRACES_TABLE)
        conn.execute("PRAGMA user_version = 16")
        insert(conn, ids)
    finally:
        conn.close()
    return path


def insert(conn: sqlite3.Connection, ids: Iterable[str]) -> None:
    """Rows as the CLI's scan inserts them: no branch, no commit, no remote."""
    now = int(time.time() * 1000)
    conn.executemany(
        "INSERT INTO traces (id, agent_id, title, timestamp, directory, identity_scheme,"
        " created_at) VALUES (?, 'claude-code', 'A bench session', ?, ?, 'v2', ?)",
        [(trace_id, now + i, f"/src/repo{i % 100}", now) for i, trace_id in enumerate(ids)],
    )


def filled(path: Path) -> int:
    """How many rows have a branch and a commit."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
    try:
        sql = "SELECT COUNT(*) FROM traces WHERE git_branch IS NOT NULL AND git_ref IS NOT NULL"
        count: int = conn.execute(sql).fetchone()[0]
        return count
    finally:
        conn.close()
