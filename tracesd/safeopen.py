"""Opening files other programs own, so that none of them can block us or feed us forever.

A path under an agent's root or inside a repository is whatever its owner (or an attacker)
made it. A FIFO blocks open() until a writer comes, which may be never; a character device
(/dev/zero, /dev/urandom) never ends; a socket or a directory is not a file at all. Every
file tracesd reads from such a place goes through `open_regular`:

1. stat the path: anything but a regular file is refused without being opened (opening a
   device can itself have effects: a tty, a tape, a watchdog);
2. open with O_NONBLOCK (and O_NOCTTY): a FIFO swapped in after the stat opens at once
   instead of blocking;
3. fstat what was opened: refused unless it is a regular file.

O_NONBLOCK is left set: for a regular file it changes nothing (reads never return EAGAIN).

SQLite opens its files itself, so an agent's store is checked with `check_store` right
before connecting. What remains is a race: a path swapped for a FIFO between our stat and
SQLite's open() blocks that one worker thread until a writer opens the FIFO.

Refusals of side files (a workspace's `workspace.json`, a `.project_root`, a repository's
HEAD) are logged once per path as `files.refused` and counted by kind in `REFUSED`, which
`tracesd status` shows. A session file that is refused is the caller's to report (as the
parse error `not_a_file`), so `note=False` skips this accounting.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import Counter, OrderedDict

import structlog

log = structlog.get_logger("tracesd.safeopen")

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: paths remembered as refused (logged once each); older ones are forgotten first
_REMEMBERED = 4096
#: the files SQLite opens beside a database: a FIFO as a hot `-journal` blocks it
STORE_SIDE_FILES = ("-journal", "-wal", "-shm")


class NotRegular(OSError):
    """The path is not a regular file; `kind` says what it is (fifo, char_device, ...)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"not a regular file ({kind}): {path!r}")
        self.path = path
        self.kind = kind


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in the words of `NotRegular.kind`."""
    if stat.S_ISREG(mode):
        return "file"
    for test, kind in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "char_device"),
        (stat.S_ISBLK, "block_device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
    ):
        if test(mode):
            return kind
    return "other"


def open_regular(path: str, *, follow_symlinks: bool = True, note: bool = True) -> int:
    """A file descriptor open for reading on `path`, a regular file. Never blocks on a
    special file: raises NotRegular (noted in REFUSED unless `note` is False), or the
    OSError of the stat or open. `follow_symlinks=False`: a symlink is refused too."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
        _require_regular(path, st.st_mode)
        flags = _FLAGS if follow_symlinks else _FLAGS | os.O_NOFOLLOW
        fd = os.open(path, flags)
        try:
            _require_regular(path, os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
    except NotRegular as exc:
        if note:
            REFUSED.note(exc)
        raise
    return fd


def read_head(path: str, limit: int, *, note: bool = True) -> bytes:
    """Up to `limit` bytes from the start of the regular file `path` (see open_regular)."""
    fd = open_regular(path, note=note)
    try:
        parts: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def check_store(database: str) -> os.stat_result:
    """The stat of `database`, a regular file whose SQLite side files, where present, are
    regular files too; else NotRegular (not noted: the store's reader reports it)."""
    st = os.stat(database)
    _require_regular(database, st.st_mode)
    for suffix in STORE_SIDE_FILES:
        try:
            side = os.stat(database + suffix)
        except FileNotFoundError:
            continue
        _require_regular(database + suffix, side.st_mode)
    return st


def _require_regular(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotRegular(path, kind_of(mode))


class Refusals:
    """Special files refused, by kind, each path logged (and counted) once while it is
    remembered. Thread-safe: adapters run on worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, str] = OrderedDict()
        self.by_kind: Counter[str] = Counter()

    def note(self, exc: NotRegular) -> None:
        with self._lock:
            if self._seen.get(exc.path) == exc.kind:
                self._seen.move_to_end(exc.path)
                return
            self._seen[exc.path] = exc.kind
            if len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
            self.by_kind[exc.kind] += 1
        log.warning("files.refused", path=exc.path, kind=exc.kind, reason="not_a_regular_file")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_kind)


#: the daemon's refusals (process-wide, like its log)
REFUSED = Refusals()
