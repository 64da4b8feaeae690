"""The exception tree of tracesd.

    TracesdError
    ├── ConfigError          bad config file, key or value; the CLI exits 2
    ├── ParseError           a session file that cannot be read as a trace; ingest skips it
    ├── ListenError          `tracesd server` cannot bind its address; the CLI exits 1
    ├── AlreadyRunning       a daemon holds the lock or answers on the socket; the CLI exits 1
    ├── NotRunning           no daemon answers on the status socket; the CLI exits 3
    ├── ServiceError         `tracesd service` cannot install, remove or ask here
    ├── StoreError           the database cannot be used
    │   ├── SchemaTooNew     written by a newer tracesd or Traces CLI; refuse, never downgrade
    │   ├── StoreCorrupt     SQLite says corrupt or not a database; the daemon moves it aside
    │   ├── RowRejected      the database refused one row's values; that trace fails alone
    │   └── StoreClosed      used after close()
    └── SyncError            a request to the Traces API did not succeed
        └── BackendUnavailable   no answer to doctor's check (network, timeout)
            └── MalformedAnswer  an answer that is not what openapi.json says (answers.py)

Foreign exceptions (sqlite3, OSError, json) are translated once, where the foreign call is
made, and handled where a decision is made: ingest skips and counts, the CLI prints one
line and picks an exit code. Sync's requests raise nothing: the client returns typed
outcomes (sync/wire.py: Stored, Refused, NotNow, KeyRefused...) that the job acts on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracesd.models import SkippedLine


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

    def __init__(self, reason: str, message: str, skipped: tuple[SkippedLine, ...] = ()) -> None:
        self.reason = reason
        #: the lines passed over before the read gave up (reported like a good read's)
        self.skipped = skipped
        super().__init__(message)


class ListenError(TracesdError):
    """The address cannot be bound (in use, not ours, not an address)."""


class AlreadyRunning(TracesdError):
    """Another daemon holds the instance lock, or answers on the status socket.

    `where` names what it holds: `lock /path/traces.db.lock` or `socket /path`."""

    def __init__(self, pid: object, where: str) -> None:
        self.pid = pid
        super().__init__(f"tracesd is already running (pid {pid}, {where})")


class NotRunning(TracesdError):
    """No daemon answers on the status socket."""


class ServiceError(TracesdError):
    """A service cannot be installed, removed or asked here; the message says what to do."""


class StoreError(TracesdError):
    """The database cannot be opened, migrated or written.

    `busy` is True when it stayed locked by another writer past the busy timeout, `full`
    when the disk (or the database's size limit) is full: both are worth retrying later,
    nothing is wrong with the database itself.
    """

    def __init__(self, message: str, *, busy: bool = False, full: bool = False) -> None:
        self.busy = busy
        self.full = full
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.busy or self.full


class SchemaTooNew(StoreError):
    """The database has a schema version newer than this tracesd understands."""

    def __init__(self, path: Path, found: int, supported: int, *, ours: bool = True) -> None:
        self.found = found
        self.supported = supported
        self.ours = ours
        if ours:
            text = (
                f"{path} has schema version {found}, newer than the {supported} this tracesd"
                " supports (tracesd's own numbering, not the Traces CLI's); upgrade tracesd"
            )
        else:
            text = (
                f"{path} is not tracesd's database (schema version {found} is another"
                " program's numbering, the Traces CLI's?); set [storage] db_path to a file of"
                " tracesd's own, or remove the key"
            )
        super().__init__(f"{text} (the database was left untouched)")


class StoreCorrupt(StoreError):
    """SQLite reports the file corrupt (SQLITE_CORRUPT) or not a database (SQLITE_NOTADB).

    Never raised for a database that is merely locked or busy: that is StoreError(busy).
    """

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"database {path} is corrupt ({detail}); `tracesd run` moves it aside and rebuilds"
            " it from the session files"
        )


class RowRejected(StoreError):
    """The database refused the values of a row (they cannot be stored as given)."""


class StoreClosed(StoreError):
    """The store was used after close()."""


class SyncError(TracesdError):
    """A request to the Traces API did not succeed. Messages never contain the API key."""


class BackendUnavailable(SyncError):
    """The server cannot be asked now (`tracesd doctor`'s check): worth retrying later."""


class MalformedAnswer(BackendUnavailable):
    """The answer is not what the API document promises (answers.py): retried later."""
