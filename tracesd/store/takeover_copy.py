"""Copying tracesd's part of an earlier file into a database of its own (see `takeover`).

Three ways: the whole file (`backup`, when only tracesd used it); tracesd's rows rebuilt
at tracesd's schema of the time in a new file (`rebuild`, when the Traces CLI adopted it);
what an existing database lacks of it (`merge`). The rows kept from an adopted file are
those tracesd captured (their ids are in `tracesd_files`) and wrote (`updated_at` set: a
row the CLI pruned and re-inserted has none); a `tracesd_files` record whose traces are not
kept is left behind, so the next scan reads that session file again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tracesd import sqliteuri
from tracesd.errors import TracesdError
from tracesd.git import remote_url
from tracesd.sqliteerrors import Fault, fault
from tracesd.store import migrations, owner

#: the schema (tracesd's numbering) of every tracesd that kept its database at ~/.traces
LEGACY_VERSION = 4


class Busy(TracesdError):
    """Another process holds what the takeover needs; it is tried again later."""


def backup(legacy: Path, temp: Path, busy_timeout_s: float) -> int:
    """The whole file, WAL included, read by a second connection while the caller holds its
    write lock (SQLite's backup refuses a source connection that is writing)."""
    old = sqlite3.connect(sqliteuri.read_only(legacy), uri=True, timeout=busy_timeout_s)
    new = create(temp)
    try:
        old.backup(new)
        return int(new.execute("SELECT COUNT(*) FROM traces").fetchone()[0])
    finally:
        new.close()
        old.close()


def rebuild(legacy: Path, temp: Path, busy_timeout_s: float) -> tuple[int, int]:
    """tracesd's part of an adopted file, at tracesd's schema of the time, in `temp`."""
    conn = create(temp)
    try:
        conn.execute("ATTACH DATABASE ? AS old", (sqliteuri.read_only(legacy),))
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("BEGIN IMMEDIATE")
        for version, _name, step in migrations.SHARED:
            if version <= LEGACY_VERSION:
                step(conn)
        conn.execute(f"PRAGMA user_version = {LEGACY_VERSION}")
        for sql in _ddl(conn, "table"):
            conn.execute(sql)
        counts = _copy(conn, everything=False)
        for sql in _ddl(conn, "index", "trigger"):  # after the rows: no outbox bump
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE old")
    finally:
        conn.close()
    fsync(temp)
    return counts


def merge(legacy: Path, db: Path, busy_timeout_s: float, *, everything: bool) -> tuple[int, int]:
    """What our existing database lacks of the earlier file, in one transaction."""
    conn = _connect(db, busy_timeout_s)
    try:
        conn.execute("ATTACH DATABASE ? AS old", (sqliteuri.read_only(legacy),))
        conn.execute("BEGIN IMMEDIATE")
        if not {"traces", "tracesd_files", "tracesd_outbox"} <= owner.tables(conn):
            # not migrated yet (a crash right after it was created): opening it migrates
            # it, and the next start merges
            raise Busy(f"{db} is not migrated yet")
        counts = _copy(
            conn, everything=everything or owner.owner(conn, "old") is owner.Owner.TRACESD
        )
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if fault(exc) is Fault.BUSY:
            raise Busy(f"{db} stayed locked: {exc}") from None
        raise
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    return counts


def _copy(conn: sqlite3.Connection, *, everything: bool) -> tuple[int, int]:
    """Rows of `old` that `main` lacks: the traces tracesd captured and wrote (all of them
    in a file only tracesd used), their outbox and file records, and tracesd's other
    tables. The traces rows counted, and the file records left behind."""
    kept = "SELECT id FROM old.traces"
    if not everything:
        # tracesd always sets updated_at; a row the CLI pruned and re-inserted has none
        kept += (
            " WHERE updated_at IS NOT NULL AND id IN (SELECT j.value FROM old.tracesd_files f,"
            " json_each(COALESCE(f.trace_ids, '[]')) j)"
        )
    conn.execute("CREATE TEMP TABLE takeover_new (id TEXT PRIMARY KEY)")
    conn.execute(
        f"INSERT INTO takeover_new SELECT id FROM ({kept})"
        " WHERE id NOT IN (SELECT id FROM main.traces)"
    )
    cols = _common(conn, "traces")
    conn.execute(
        f"INSERT INTO main.traces ({cols}) SELECT {cols} FROM old.traces"
        " WHERE id IN (SELECT id FROM takeover_new)"
    )
    rows = int(conn.execute("SELECT COUNT(*) FROM takeover_new").fetchone()[0])
    # Rows merged into a database past the canonical-URL migration skip it: canonical here.
    urls = conn.execute(
        "SELECT DISTINCT git_remote_url FROM main.traces WHERE git_remote_url IS NOT NULL"
        " AND id IN (SELECT id FROM takeover_new)"
    ).fetchall()
    for (url,) in urls:
        conn.execute(
            "UPDATE main.traces SET git_remote_url = ? WHERE git_remote_url = ?"
            " AND id IN (SELECT id FROM takeover_new)",
            (remote_url.canonical_or_none(url), url),
        )
    ours = owner.tables(conn) & owner.tables(conn, "old")
    if "tracesd_outbox" in ours:  # replaces the row the insert trigger made: no resend
        cols = _common(conn, "tracesd_outbox")
        conn.execute(
            f"INSERT OR REPLACE INTO main.tracesd_outbox ({cols}) SELECT {cols}"
            " FROM old.tracesd_outbox WHERE trace_id IN (SELECT id FROM takeover_new)"
        )
    forgotten = 0
    if "tracesd_files" in ours:
        cols = _common(conn, "tracesd_files")
        lost = (
            "EXISTS (SELECT 1 FROM json_each(COALESCE(f.trace_ids, '[]')) j"
            " WHERE j.value NOT IN (SELECT id FROM main.traces))"
        )
        conn.execute(
            f"INSERT OR IGNORE INTO main.tracesd_files ({cols}) SELECT {cols}"
            f" FROM old.tracesd_files f WHERE NOT {lost}"
        )
        found = conn.execute(f"SELECT COUNT(*) FROM old.tracesd_files f WHERE {lost}")
        forgotten = int(found.fetchone()[0])
    for table in sorted(ours - {"tracesd_outbox", "tracesd_files"}):
        if table.startswith("tracesd_"):
            cols = _common(conn, table)
            conn.execute(
                f"INSERT OR IGNORE INTO main.{table} ({cols}) SELECT {cols} FROM old.{table}"
            )
    conn.execute("DROP TABLE temp.takeover_new")
    return rows, forgotten


def _common(conn: sqlite3.Connection, table: str) -> str:
    """The columns `table` has in both databases, quoted, in `main`'s order."""
    theirs = {row[1] for row in conn.execute(f"PRAGMA old.table_info({table})")}
    mine = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
    return ", ".join(f'"{name}"' for name in mine if name in theirs)


def _ddl(conn: sqlite3.Connection, *types: str) -> list[str]:
    """tracesd's own tables (or indexes and triggers) of `old` that `main` lacks."""
    marks = ", ".join("?" for _ in types)
    rows = conn.execute(
        f"SELECT name, sql FROM old.sqlite_master WHERE type IN ({marks}) AND sql IS NOT NULL"
        " AND name LIKE 'tracesd\\_%' ESCAPE '\\'",
        types,
    )
    present = {
        row[0]
        for row in conn.execute(
            f"SELECT name FROM main.sqlite_master WHERE type IN ({marks})", types
        )
    }
    return [sql for name, sql in rows if name not in present]


def create(path: Path) -> sqlite3.Connection:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    return _connect(path, 5.0)


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """By URI, so that the earlier file can be attached read-only."""
    return sqlite3.connect(
        sqliteuri.uri(path), uri=True, timeout=busy_timeout_s, isolation_level=None
    )


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
