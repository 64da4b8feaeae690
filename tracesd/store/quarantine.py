"""A corrupt database: recognised cheaply, moved aside whole, never overwritten.

SQLite says so itself (`sqliteerrors.Fault.CORRUPT`): SQLITE_CORRUPT ("database disk image
is malformed") or SQLITE_NOTADB ("file is not a database"). A database that is locked or
busy (the Traces CLI shares the file) is never corrupt: those are other codes, and nothing
here treats them as corruption. At open the daemon checks the header (16 bytes) and runs
`PRAGMA quick_check(1)`, which reads every page once (0.24 to 0.38 s for 100,000 traces,
a 152 MB file, on this project's 2-core machine; `integrity_check` took 1.0 s) and catches
a zeroed page that plain queries, answered from intact indexes, do not notice.

A corrupt file is renamed `traces.db.corrupt-<UTC time>` with its `-wal`, `-shm` and
`-journal` beside it under the same new name (so `sqlite3` opens the pair as it was), the
WAL first: a WAL left behind would be replayed into the new database.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from tracesd.errors import StoreCorrupt
from tracesd.safeopen import NotRegular, read_head

HEADER = b"SQLite format 3\x00"
_SIDECARS = ("-wal", "-shm", "-journal")


def check_header(path: Path) -> None:
    """Raise StoreCorrupt unless `path` is empty (a new database) or starts like SQLite."""
    try:
        head = read_head(str(path), len(HEADER), note=False)  # never blocks on a FIFO
    except FileNotFoundError:
        return
    except NotRegular as exc:
        raise StoreCorrupt(path, f"not a database file but a {exc.kind}") from None
    except OSError:
        return  # unreadable is not corrupt: opening it reports the real reason
    if head and head != HEADER:
        raise StoreCorrupt(path, "file is not a database: no SQLite header")


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Raise StoreCorrupt when `PRAGMA quick_check` finds a problem (the first is named)."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    if rows != [("ok",)]:
        first = str(rows[0][0]) if rows else "no answer"
        detail = first.replace("*** in database main ***", "").strip().splitlines()[0]
        raise StoreCorrupt(path, f"quick_check: {detail}")


def move_aside(path: Path, *, now: float | None = None) -> Path:
    """Rename the database and its -wal/-shm/-journal to `<name>.corrupt-<UTC time>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in _SIDECARS:  # the WAL first: never replayed into the next database
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.replace(sidecar, target.with_name(target.name + suffix))
    os.replace(path, target)
    return target


def quarantined(path: Path) -> list[Path]:
    """Databases moved aside from `path` so far, oldest first."""
    try:
        found = path.parent.glob(f"{path.name}.corrupt-*")
        return sorted(p for p in found if not p.name.endswith(_SIDECARS))
    except OSError:
        return []


def recovery_hint(moved: Path) -> str:
    return (
        f"the corrupt file is kept at {moved}; to salvage rows the session files no longer"
        f" hold: sqlite3 {moved} .recover | sqlite3 recovered.db; delete it when done"
    )
