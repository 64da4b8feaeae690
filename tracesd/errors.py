"""The exception tree of tracesd.

    TracesdError
    ├── ConfigError          bad config file, key or value; the CLI exits 2
    ├── ParseError           a session file that cannot be read as a trace; ingest skips it
    └── StoreError           the database cannot be used
        ├── SchemaTooNew     written by a newer tracesd or Traces CLI; refuse, never downgrade
        ├── RowRejected      the database refused one row's values; that trace fails alone
        └── StoreClosed      used after close()

Foreign exceptions (sqlite3, OSError, json) are translated once, where the foreign call is
made, and handled where a decision is made: ingest skips and counts, the CLI prints one
line and picks an exit code.
"""

from __future__ import annotations

from pathlib import Path


class TracesdError(Exception):
    """Root of every error tracesd raises on purpose."""


class ConfigError(TracesdError):
    """A config file, key or value is wrong. The message names the key and the file."""

    def __init__(self, message: str, *, key: str | None = None, path: Path | None = None) -> None:
        self.key = key
        self.path = path
        where = f" in {path}" if path is not None else ""
        subject = f"{key}: " if key else ""
        super().__init__(f"{subject}{message}{where}")


class ParseError(TracesdError):
    """A session file could not be read as a trace.

    `reason` is a short stable token (`malformed`, `binary`, `oversize`, `unreadable`,
    `vanished`, `not_a_file`) used for counting; the message says what was wrong.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class StoreError(TracesdError):
    """The database cannot be opened, migrated or written.

    `busy` is True when it stayed locked by another writer past the busy timeout: worth
    retrying later, nothing is wrong with it.
    """

    def __init__(self, message: str, *, busy: bool = False) -> None:
        self.busy = busy
        super().__init__(message)


class SchemaTooNew(StoreError):
    """The database has a schema version newer than this tracesd understands."""

    def __init__(self, path: Path, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path} has schema version {found}, newer than the {supported} this tracesd "
            "supports; upgrade tracesd (the database was left untouched)"
        )


class RowRejected(StoreError):
    """The database refused the values of a row (they cannot be stored as given)."""


class StoreClosed(StoreError):
    """The store was used after close()."""
