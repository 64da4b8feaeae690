"""The reference server's SQLite layout, and the migrations from earlier versions.

Versions: 1 the first layout; 2 every stored gitRemoteUrl canonical; 3 ownership (each
trace belongs to one namespace), the server's own trace id, the Traces CLI's trace fields
(projectName, model, tokenUsage, relatedTo, relationshipType, sourceCreatedAt), a message
count, and the messages and parts tables.

2 -> 3: the traces rebuilt with their seq (cursors and insertion order survive), each given
a random server id and the namespace the server names (`legacy_namespace`: the first
configured token's, so a single-token server keeps serving its client every trace it had).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tracesd.errors import StoreError
from tracesd.git.remote_url import canonical
from tracesd.sqliteerrors import Fault, fault
from tracesd.store.dbfile import create_private

SCHEMA_VERSION = 3

_TRACES = (
    # seq: insertion order, never reused (AUTOINCREMENT: a deleted newest row's seq
    # is not handed out again, so a cursor's "seq below N" keeps its meaning)
    "CREATE TABLE traces ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " external_id TEXT NOT NULL UNIQUE, namespace_id TEXT NOT NULL, agent_id TEXT NOT NULL,"
    " title TEXT, preview TEXT, timestamp INTEGER, project_path TEXT, project_name TEXT,"
    " model TEXT, token_usage TEXT, visibility TEXT,"
    " git_remote_url TEXT, git_branch TEXT, git_ref TEXT,"
    " related_to TEXT, relationship_type TEXT, source_created_at NUMERIC,"
    " message_count INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)"
)
_INDEXES = (
    # Each index ends in the rowid: "filter = ? AND seq < ? ORDER BY seq DESC" is a range.
    "CREATE INDEX traces_namespace ON traces (namespace_id)",
    "CREATE INDEX traces_remote ON traces (namespace_id, git_remote_url)",
    "CREATE INDEX traces_remote_branch ON traces (namespace_id, git_remote_url, git_branch)",
    "CREATE INDEX traces_agent ON traces (namespace_id, agent_id)",
)
_MESSAGES = (
    # one row per message externalId of a trace; ord is the message's first order
    "CREATE TABLE messages ("
    " rowid INTEGER PRIMARY KEY, trace_seq INTEGER NOT NULL, external_id TEXT NOT NULL,"
    " ord INTEGER NOT NULL, role TEXT NOT NULL, source_key TEXT, text_content TEXT,"
    " model TEXT, timestamp NUMERIC, token_usage TEXT,"
    " UNIQUE (trace_seq, external_id))",
    "CREATE INDEX messages_order ON messages (trace_seq, ord)",
    # one row per part of a message, keyed by its externalId (or its place when it has
    # none); placed by the order of the batch entry that carried it, then its index there
    "CREATE TABLE parts ("
    " message INTEGER NOT NULL, part_key TEXT NOT NULL, entry_order INTEGER NOT NULL,"
    " idx INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (message, part_key))"
    " WITHOUT ROWID",
)
_V2_COLUMNS = (
    "seq, external_id, agent_id, title, preview, timestamp, project_path, visibility,"
    " git_remote_url, git_branch, git_ref, created_at, updated_at"
)


def prepare(path: Path, busy_timeout_s: float, legacy_namespace: str) -> None:
    """Create the directory (0700), the file (0600), WAL mode and the schema if needed;
    migrate an earlier version (rows without an owner go to `legacy_namespace`)."""
    create_private(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    try:
        with translated(path):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")  # a second server starting at once waits here
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has server schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this tracesd supports; upgrade tracesd"
                )
            if version == 0:
                for statement in (_TRACES, *_INDEXES, *_MESSAGES):
                    conn.execute(statement)
            else:
                if version < 2:
                    _canonical_remotes(conn)
                if version < 3:
                    _owned(conn, legacy_namespace)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
    finally:
        conn.close()


def _canonical_remotes(conn: sqlite3.Connection) -> None:
    """1 -> 2: each stored gitRemoteUrl in canonical form, per distinct value; updatedAt
    stays (the repository is the same, only its spelling changed)."""
    found = conn.execute(
        "SELECT DISTINCT git_remote_url FROM traces WHERE git_remote_url IS NOT NULL"
    )
    for (stored,) in found.fetchall():
        wanted = canonical(stored)
        if wanted != stored:
            conn.execute(
                "UPDATE traces SET git_remote_url = ? WHERE git_remote_url = ?", (wanted, stored)
            )


def _owned(conn: sqlite3.Connection, namespace: str) -> None:
    """2 -> 3: the traces rebuilt in the new layout (same seq, every field kept), owned by
    `namespace`, each with a random server id; the message tables created."""
    conn.execute("ALTER TABLE traces RENAME TO traces_v2")
    for index in ("traces_remote", "traces_remote_branch", "traces_agent"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute(_TRACES)
    conn.execute(
        f"INSERT INTO traces ({_V2_COLUMNS}, id, namespace_id)"
        f" SELECT {_V2_COLUMNS}, lower(hex(randomblob(16))), ? FROM traces_v2 ORDER BY seq",
        (namespace,),
    )
    conn.execute("DROP TABLE traces_v2")
    for statement in (*_INDEXES, *_MESSAGES):
        conn.execute(statement)


@contextlib.contextmanager
def translated(path: Path) -> Iterator[None]:
    """sqlite3 errors as StoreError (busy: worth retrying)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"database {path}: {exc}", busy=fault(exc) is Fault.BUSY) from exc
