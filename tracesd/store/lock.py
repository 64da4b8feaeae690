"""One daemon per database: an exclusive `flock` on a file beside it, taken first.

`tracesd run` locks `<db>.lock` (`traces.db.lock`, 0600) before it touches anything else
and holds it for its whole life; a second daemon started on the same database, even at the
same instant, finds it held and exits 1 naming the holder's pid (written into the file by
the holder). The kernel releases the lock when the holder exits, however it exits
(`kill -9` included), so a new daemon can start at once. A daemon that exits normally
removes the file while it still holds the lock, and a daemon that gets the lock checks
that the path still names the file it locked (else it opens the new one and tries again):
so a removed file can never let two processes hold "the" lock, and nothing is left beside
the database of a daemon that refused to start. After `kill -9` the file stays, with the
dead pid in it, unlocked: the next daemon takes it.

`tracesd scan` does not take it: SQLite (WAL, busy timeout) makes it a safe second writer
beside a daemon, like the Traces CLI; the lock is about two daemons both watching,
scanning and syncing the same database.

The status socket keeps its own probe: two daemons on different databases may still be
pointed at the same socket, and the second is refused there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path

import structlog

from tracesd.errors import AlreadyRunning, TracesdError

log = structlog.get_logger("tracesd.instance")

#: the pid written into the lock file is at most this long
_PID_MAX = 32
#: how long an empty lock file held by another process is read again for its pid
_PID_WAIT_S = 1.0


def lock_path(db_path: Path) -> Path:
    """Beside the database's real file: two spellings of one database share one lock."""
    real = Path(os.path.realpath(db_path))
    return real.with_name(real.name + ".lock")


class InstanceLock:
    """The exclusive lock of one database's daemon; release() at exit (or let it die)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_path: Path) -> InstanceLock:
        """Take the lock without waiting: AlreadyRunning if another process holds it."""
        path = lock_path(db_path)
        while True:
            fd = _open(path, db_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise AlreadyRunning(holder or "unknown", f"lock {path}") from None
                raise TracesdError(f"cannot lock {path}: {exc.strerror}") from None
            # A holder that was exiting may have removed the file we opened: the lock is
            # only ours if the path still names the file we locked.
            if _same_file(fd, path):
                break
            os.close(fd)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # whatever mode an older file had
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        log.debug("instance.locked", path=str(path), pid=os.getpid())
        return cls(path, fd)

    def release(self) -> None:
        """Remove the file while still holding it, then unlock (by closing)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()
        os.close(fd)


def _open(path: Path, db_path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_NOFOLLOW: a symlink planted at the path is refused, never written through.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise TracesdError(
            f"cannot create database {db_path}'s lock file {path}: {reason}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TracesdError(f"cannot use the lock file {path}: it is not a regular file")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _read_pid(fd: int) -> str | None:
    """The holder's pid; a holder that locked a moment ago writes it within microseconds,
    so an empty file is read again for a short while (never blocking on the lock)."""
    deadline = time.monotonic() + _PID_WAIT_S
    while True:
        try:
            text = os.pread(fd, _PID_MAX, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return text
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
