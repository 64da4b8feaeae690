"""What a sqlite3 error means to its caller: busy, full, corrupt, or none of those.

Read from SQLite's own result code (`sqlite_errorcode`, primary code in its low byte), which
every error SQLite raises carries; from the message only for the errors Python's sqlite3
module raises itself, without a code. Every module that talks to SQLite asks here, then
raises its own typed error (StoreError(busy=...), the Traces CLI's Busy, ParseError
"locked", ...): the meaning of an error is decided once, how it is reported stays local.
"""

from __future__ import annotations

import enum
import sqlite3


class Fault(enum.Enum):
    #: another connection holds a lock past the busy timeout (SQLITE_BUSY, SQLITE_LOCKED):
    #: nothing is wrong with the file, try again later
    BUSY = "busy"
    #: the disk or the file's size limit is full (SQLITE_FULL)
    FULL = "full"
    #: the file is damaged or not a database (SQLITE_CORRUPT, SQLITE_NOTADB); never a lock
    CORRUPT = "corrupt"
    #: anything else
    OTHER = "other"


_BY_CODE = {
    sqlite3.SQLITE_BUSY: Fault.BUSY,
    sqlite3.SQLITE_LOCKED: Fault.BUSY,
    sqlite3.SQLITE_FULL: Fault.FULL,
    sqlite3.SQLITE_CORRUPT: Fault.CORRUPT,
    sqlite3.SQLITE_NOTADB: Fault.CORRUPT,
}


def fault(exc: sqlite3.Error) -> Fault:
    """What `exc` means: by its result code first, by its message when it has none."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _BY_CODE.get(code & 0xFF, Fault.OTHER)
    message = str(exc)
    if "malformed" in message or "not a database" in message:
        return Fault.CORRUPT
    if "locked" in message or "busy" in message:
        return Fault.BUSY
    if "disk is full" in message:
        return Fault.FULL
    return Fault.OTHER
