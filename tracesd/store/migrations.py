"""Schema migrations, applied once at open, before anything else touches the database.

Two ordered lists:

* `SHARED`: the `traces` table (the Traces CLI's v3 layout plus the git columns). Its
  version is `PRAGMA user_version` in **tracesd's own numbering**, not the Traces CLI's
  (the CLI's git columns came at its version 5, ours at 4): the file is tracesd's alone
  (`takeover` moves an earlier install's out of the CLI's legacy location).
* `PRIVATE`: tables of tracesd's own (`tracesd_*`), recorded by name in
  `tracesd_migrations`. They never bump `user_version`.

Every step runs in its own `BEGIN IMMEDIATE` transaction together with its bookkeeping and
is idempotent (it checks what exists before it adds), so a crash mid-way, a re-run, or a
second process migrating at the same time all end in the same schema. A database newer
than `SCHEMA_VERSION` is refused untouched.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracesd import sqliteuri
from tracesd.errors import SchemaTooNew, StoreCorrupt, StoreError
from tracesd.git.remote_url import canonical_or_none
from tracesd.sqliteerrors import Fault, fault
from tracesd.store import owner, quarantine

SCHEMA_VERSION = 6

Step = Callable[[sqlite3.Connection], None]

# The Traces CLI v3 layout.
_V3_COLUMNS = (
    ("agent_id", "TEXT"),
    ("title", "TEXT"),
    ("preview", "TEXT"),
    ("timestamp", "INTEGER"),
    ("directory", "TEXT"),
    ("source_path", "TEXT"),
    ("shared_url", "TEXT"),
    ("shared_visibility", "TEXT"),
)
_V4_COLUMNS = (
    ("git_remote_url", "TEXT"),
    ("git_branch", "TEXT"),
    ("git_ref", "TEXT"),
    ("created_at", "INTEGER"),
    ("updated_at", "INTEGER"),
)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _add_missing(
    conn: sqlite3.Connection, table: str, columns: tuple[tuple[str, str], ...]
) -> None:
    present = _columns(conn, table)
    for name, decl in columns:
        if name not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def _traces_v3(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS traces (
            id TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            title TEXT,
            preview TEXT,
            timestamp INTEGER,
            directory TEXT,
            source_path TEXT,
            shared_url TEXT,
            shared_visibility TEXT
        )
        """
    )
    _add_missing(conn, "traces", _V3_COLUMNS)  # older layouts with fewer columns


def _traces_v4_git(conn: sqlite3.Connection) -> None:
    _add_missing(conn, "traces", _V4_COLUMNS)
    now = int(time.time() * 1000)
    conn.execute(
        "UPDATE traces SET created_at = COALESCE(created_at, timestamp, ?),"
        " updated_at = COALESCE(updated_at, timestamp, ?)"
        " WHERE created_at IS NULL OR updated_at IS NULL",
        (now, now),
    )
    conn.execute("CREATE INDEX IF NOT EXISTS traces_git_remote_url ON traces (git_remote_url)")
    conn.execute("CREATE INDEX IF NOT EXISTS traces_timestamp ON traces (timestamp)")


def _traces_v5_canonical_remote(conn: sqlite3.Connection) -> None:
    # One repository identity (INTERFACE section 5): every stored URL in canonical form,
    # rewritten per distinct value. The outbox trigger re-queues each trace whose URL
    # changes: the server then gets the canonical URL too, which is what we send now.
    found = conn.execute(
        "SELECT DISTINCT git_remote_url FROM traces WHERE git_remote_url IS NOT NULL"
    ).fetchall()
    for (stored,) in found:
        wanted = canonical_or_none(stored)
        if wanted != stored:
            conn.execute(
                "UPDATE traces SET git_remote_url = ? WHERE git_remote_url = ?", (wanted, stored)
            )


def _traces_v6_model(conn: sqlite3.Connection) -> None:
    # The session's model (the Traces CLI sends it). An existing row keeps NULL until its
    # session file changes and is read again (a trace without a model sends none). The
    # outbox's synced columns change with it: what the client sends now (the CLI's PUT
    # field set).
    _add_missing(conn, "traces", (("model", "TEXT"),))
    if "tracesd_outbox" in _tables(conn):
        conn.execute("DROP TRIGGER IF EXISTS tracesd_outbox_update")
        conn.execute(_update_trigger(_V6_SYNCED))


#: the synced columns as of schema 6 (frozen: a later change is a new migration)
_V6_SYNCED = (
    "agent_id",
    "title",
    "directory",
    "model",
    "created_at",
    "shared_url",
    "git_remote_url",
    "git_branch",
    "git_ref",
)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _files(conn: sqlite3.Connection) -> None:
    # What the last read of each session file saw, so a scan can skip unchanged files.
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tracesd_files (
            path TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            trace_ids TEXT,
            error TEXT,
            seen_at INTEGER NOT NULL
        )
        """
    )


# Migrations never read a live constant (editing one would silently diverge from the
# databases made before): each one that builds the outbox's triggers or indexes holds its
# own copy of what it builds. Their SQL below is frozen too: a change is a new migration.
# The outbox's trigger watches the columns the client sends (wire.SYNCED_FIELDS), and its
# pending indexes serve the outbox's query (outbox.PENDING_SQL); tests/test_migrations.py
# fails while a new file or a migrated one differs from those.

_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
_BUMP = f"""
    INSERT INTO tracesd_outbox (trace_id, version, changed_at) VALUES (NEW.id, 1, {_NOW_MS})
    ON CONFLICT (trace_id) DO UPDATE SET version = version + 1, changed_at = excluded.changed_at;
"""


def _update_trigger(synced: tuple[str, ...], *, if_not_exists: bool = False) -> str:
    """The trigger that bumps a trace's outbox version when one of `synced` changes."""
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in synced)
    guard = " IF NOT EXISTS" if if_not_exists else ""
    return (
        f"CREATE TRIGGER{guard} tracesd_outbox_update AFTER UPDATE OF"
        f" {', '.join(synced)} ON traces WHEN {changed} BEGIN {_BUMP} END"
    )


#: the synced columns 0002 watches. PRIVATE steps run after every SHARED one, so on a new
#: file 0002 builds the trigger as the latest SHARED step would (6 finds no outbox there):
#: this copy is schema 6's. A later change of the synced columns is a PRIVATE step after
#: 0002, which rebuilds the trigger on new and old files alike.
_OUTBOX_SYNCED = (
    "agent_id",
    "title",
    "directory",
    "model",
    "created_at",
    "shared_url",
    "git_remote_url",
    "git_branch",
    "git_ref",
)
#: a pending outbox row, as 0002 indexes it
_OUTBOX_PENDING = "version > sent_version AND (failed_version IS NULL OR failed_version < version)"


def _outbox(conn: sqlite3.Connection) -> None:
    # One row per trace: `version` counts changes to synced fields, `sent_version` is the
    # last version the server acknowledged, `failed_version` one it refused for good.
    # Triggers bump the version in the very transaction that changes the trace, whoever
    # writes it (the Traces CLI shares this table), so no change can be missed.
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tracesd_outbox (
            trace_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            sent_version INTEGER NOT NULL DEFAULT 0,
            failed_version INTEGER,
            error TEXT,
            changed_at INTEGER NOT NULL
        )
        """
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS tracesd_outbox_pending ON tracesd_outbox (changed_at)"
        f" WHERE {_OUTBOX_PENDING}"
    )
    conn.execute(
        "CREATE TRIGGER IF NOT EXISTS tracesd_outbox_insert AFTER INSERT ON traces"
        f" BEGIN {_BUMP} END"
    )
    conn.execute(_update_trigger(_OUTBOX_SYNCED, if_not_exists=True))
    # Traces stored before sync existed are pending too.
    conn.execute(
        f"INSERT OR IGNORE INTO tracesd_outbox (trace_id, version, changed_at)"
        f" SELECT id, 1, COALESCE(updated_at, {_NOW_MS}) FROM traces"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS tracesd_sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )


SHARED: tuple[tuple[int, str, Step], ...] = (
    (3, "traces_v3_layout", _traces_v3),
    (4, "traces_git_context", _traces_v4_git),
    (5, "traces_canonical_remote", _traces_v5_canonical_remote),
    (6, "traces_model", _traces_v6_model),
)


def _status_indexes(conn: sqlite3.Connection) -> None:
    # `tracesd status` counts traces per agent; a covering index keeps that cheap.
    conn.execute("CREATE INDEX IF NOT EXISTS tracesd_traces_agent ON traces (agent_id)")


def _shared_index(conn: sqlite3.Connection) -> None:
    # `[sync] scope = "shared"` claims and counts only shared traces: status and sync start
    # from these few rows instead of joining every pending trace to its row.
    conn.execute(
        "CREATE INDEX IF NOT EXISTS tracesd_traces_shared ON traces (id)"
        " WHERE shared_url IS NOT NULL"
    )


#: a pending outbox row, as 0005 indexes it
_CLAIM_ORDER_PENDING = (
    "version > sent_version AND (failed_version IS NULL OR failed_version < version)"
)


def _outbox_claim_order(conn: sqlite3.Connection) -> None:
    # A claim takes pending traces in (changed_at, trace_id) order; traces written in one
    # transaction share changed_at, so an index on changed_at alone left every claim to
    # sort all pending rows. This one serves the claim's order, and the pending count.
    conn.execute(
        "CREATE INDEX IF NOT EXISTS tracesd_outbox_pending_order"
        f" ON tracesd_outbox (changed_at, trace_id) WHERE {_CLAIM_ORDER_PENDING}"
    )
    conn.execute("DROP INDEX IF EXISTS tracesd_outbox_pending")


def _messages(conn: sqlite3.Connection) -> None:
    # The message follower (store/follow.py). Per followed trace: where its reader stopped
    # in the session, and counts for status. Per event named: its keys, the `n` of its
    # `#n` part key, what the collision rule compares, its order and the digest of the
    # message last queued for it (so a re-read queues only what changed). Per message not
    # yet acknowledged by the server: its batch entry and its size (claims read sizes, not
    # bodies, to bound what a send holds); `seq` never repeats (AUTOINCREMENT),
    # so an entry replaced while its older version is on the wire is not acknowledged by
    # the answer to the older one.
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tracesd_message_follow (
            trace_id TEXT PRIMARY KEY,
            offset INTEGER NOT NULL DEFAULT 0,
            file TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT '{}',
            read_total INTEGER NOT NULL DEFAULT 0,
            sent_total INTEGER NOT NULL DEFAULT 0,
            oversized_total INTEGER NOT NULL DEFAULT 0,
            refused_total INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            read_at INTEGER,
            sent_at INTEGER
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tracesd_message_names (
            trace_id TEXT NOT NULL,
            message_key TEXT NOT NULL,
            part_key TEXT NOT NULL,
            n INTEGER NOT NULL,
            signature TEXT NOT NULL,
            ord INTEGER NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (trace_id, message_key, part_key, n)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tracesd_message_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id TEXT NOT NULL,
            part_id TEXT NOT NULL,
            ord INTEGER NOT NULL,
            body TEXT NOT NULL,
            size INTEGER NOT NULL,
            refused TEXT,
            UNIQUE (trace_id, part_id)
        )
        """
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS tracesd_message_outbox_pending"
        " ON tracesd_message_outbox (trace_id, ord) WHERE refused IS NULL"
    )


PRIVATE: tuple[tuple[str, Step], ...] = (
    ("0001_files", _files),
    ("0002_outbox", _outbox),
    ("0003_status_indexes", _status_indexes),
    ("0004_shared_index", _shared_index),
    ("0005_outbox_claim_order", _outbox_claim_order),
    ("0006_messages", _messages),
)


@dataclass(frozen=True, slots=True)
class Result:
    from_version: int
    to_version: int
    applied: tuple[str, ...]


def apply(path: Path, *, busy_timeout_s: float = 5.0, verify: bool = False) -> Result:
    """Bring the database at `path` to the current schema. Raises SchemaTooNew, StoreCorrupt
    (`verify` adds `PRAGMA quick_check` before anything is written), StoreError."""
    quarantine.check_header(path)
    try:
        if path.exists():
            # Read-only first: a read-only connection never checkpoints or removes a WAL on
            # close, so a newer or corrupt database is left byte for byte as it was found.
            _inspect(path, busy_timeout_s, verify=verify)
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            return _apply(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        kind = fault(exc)
        if kind is Fault.CORRUPT:
            raise StoreCorrupt(path, str(exc)) from None
        raise StoreError(
            f"cannot migrate database {path}: {exc}", busy=kind is Fault.BUSY
        ) from None


def _inspect(path: Path, busy_timeout_s: float, *, verify: bool) -> None:
    conn = sqlite3.connect(
        sqliteuri.read_only(path), uri=True, timeout=busy_timeout_s, isolation_level=None
    )
    try:
        found = _user_version(conn)
        if found > SCHEMA_VERSION:
            raise too_new(conn, path, found)
        if verify:
            quarantine.quick_check(conn, path)
    finally:
        conn.close()


def _apply(conn: sqlite3.Connection, path: Path) -> Result:
    start = _user_version(conn)
    if start > SCHEMA_VERSION:
        raise too_new(conn, path, start)
    conn.execute("PRAGMA journal_mode=WAL")
    applied: list[str] = []
    for target, name, step in SHARED:
        with _immediate(conn):
            current = _user_version(conn)  # re-read: another process may have migrated
            if current > SCHEMA_VERSION:
                raise too_new(conn, path, current)
            if current >= target:
                continue
            step(conn)
            conn.execute(f"PRAGMA user_version = {target}")
            applied.append(name)
    with _immediate(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tracesd_migrations"
            " (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
    for name, step in PRIVATE:
        with _immediate(conn):
            done = conn.execute("SELECT 1 FROM tracesd_migrations WHERE name = ?", (name,))
            if done.fetchone():
                continue
            step(conn)
            conn.execute(
                "INSERT INTO tracesd_migrations (name, applied_at) VALUES (?, ?)",
                (name, int(time.time() * 1000)),
            )
            applied.append(name)
    return Result(start, _user_version(conn), tuple(applied))


def too_new(conn: sqlite3.Connection, path: Path, found: int) -> SchemaTooNew:
    """The refusal of a version past ours: a newer tracesd's file, or another program's
    (the Traces CLI's numbering is not ours: its 16 says nothing about tracesd)."""
    ours = owner.owner(conn) in (owner.Owner.TRACESD, owner.Owner.EMPTY)
    return SchemaTooNew(path, found, SCHEMA_VERSION, ours=ours)


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
