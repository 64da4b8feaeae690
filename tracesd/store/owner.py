"""Whose SQLite file is this: tracesd's, the Traces CLI's, or the CLI's with tracesd's
tables still in it (an earlier tracesd's `~/.traces/traces.db` the CLI has adopted).

Told by the tables, never by `PRAGMA user_version`: the two programs number their schemas
independently (tracesd's git columns came at its version 4, the CLI's at its 5).
"""

from __future__ import annotations

import enum
import sqlite3

#: tables only tracesd creates (any one of them marks a file tracesd has used)
TRACESD_TABLES = frozenset({"tracesd_migrations", "tracesd_files", "tracesd_outbox"})
#: tables only the Traces CLI creates (0.6.31; `events` since its first versions)
CLI_TABLES = frozenset({"events", "store_metadata", "indexes"})


class Owner(enum.Enum):
    #: no tables at all (a new file)
    EMPTY = "empty"
    #: tracesd's tables and none of the CLI's
    TRACESD = "tracesd"
    #: both: the Traces CLI adopted a file tracesd made
    ADOPTED = "adopted"
    #: no tracesd table: another program's (the Traces CLI's, any version)
    FOREIGN = "foreign"


def tables(conn: sqlite3.Connection, schema: str = "main") -> set[str]:
    rows = conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
    return {str(row[0]) for row in rows}


def owner(conn: sqlite3.Connection, schema: str = "main") -> Owner:
    found = tables(conn, schema)
    if not found:
        return Owner.EMPTY
    if not found & TRACESD_TABLES:
        return Owner.FOREIGN
    return Owner.ADOPTED if found & CLI_TABLES else Owner.TRACESD
