"""The database file before anyone connects: created private (a 0700 directory, a 0600
file; an existing one of ours, and its `-wal`/`-shm`, tightened to 0600), checked,
migrated, and moved aside when corrupt (`quarantine`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tracesd.errors import StoreCorrupt, StoreError
from tracesd.private import tighten_file
from tracesd.safeopen import kind_of
from tracesd.store import migrations, quarantine, takeover

#: SQLite's files beside a database: a new one gets the database file's mode
SIDECARS = ("-wal", "-shm", "-journal")


def create_private(path: Path) -> None:
    """Create a database's directory (0700) and an empty file (0600) if they are missing;
    an existing database of ours, or a file beside it, looser than 0600 is tightened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG  # missing (created below), or the open below says why
    if not stat.S_ISREG(mode):
        # A FIFO would block the open below until a writer came; a device is no database.
        what = "a directory" if stat.S_ISDIR(mode) else f"a {kind_of(mode)}"
        raise StoreError(
            f"database path {path} is {what}, not a database file: nothing was changed;"
            f" move the {kind_of(mode).replace('_', ' ')} away, or set [storage] db_path"
            " to a file"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        for private_file in (path, *(path.with_name(path.name + end) for end in SIDECARS)):
            tighten_file(private_file)
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from None


def prepare(
    path: Path, busy_timeout_s: float, verify: bool, move: bool, legacy: Path | None = None
) -> Path | None:
    """Take over an earlier install's database at `legacy` (if there is one of ours), create,
    check and migrate; the path a corrupt database was moved to, if it was."""
    if legacy is not None:
        takeover.take_over(legacy, path, busy_timeout_s=busy_timeout_s)
    create_private(path)
    try:
        migrations.apply(path, busy_timeout_s=busy_timeout_s, verify=verify)
    except StoreCorrupt:
        if not move:
            raise
    else:
        return None
    moved = quarantine.move_aside(path)
    create_private(path)
    migrations.apply(path, busy_timeout_s=busy_timeout_s)
    return moved
