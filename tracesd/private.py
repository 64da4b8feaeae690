"""Private paths: what holds prompts or answers for this user alone.

- The process that writes them (`tracesd run`, `tracesd scan`) runs under umask 077, so
  whatever it or SQLite creates (the database, its `-wal` and `-shm`, the lock file, any
  directory on the way) is owner-only from birth, the way systemd's `UMask=0077` would.
- A private file that already exists looser (an older release, a restored backup, a file
  made by hand) is tightened to 0600 when it is ours; SQLite gives a new `-wal` and
  `-shm` the database file's mode, so the database is tightened before it is opened.
- A directory we put a socket in must be ours and closed to others, like ssh-agent's or
  tmux's: one owned by another user is refused (whoever owns it can replace what is in
  it), one of ours with looser bits is tightened to 0700 (systemd does the same with its
  `RuntimeDirectoryMode`), except the home directory, whose mode is the user's: refused.
  Each directory above it must belong to us or root and must not be writable by others
  unless sticky (`/tmp`): else someone could swap the whole tree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from tracesd.errors import ConfigError

log = structlog.get_logger("tracesd.private")

#: group and others: none of their bits on a private file or directory
OTHERS = 0o077
PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Everything this process creates from now on is owner-only."""
    os.umask(PRIVATE_UMASK)


def tighten_file(path: Path) -> bool:
    """Make an existing regular file of ours 0600; True when its mode was changed.

    Not a regular file, not ours, or missing: left alone (opening it reports the real
    problem). The symlink itself is never followed for the change."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or not st.st_mode & OTHERS:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & ~OTHERS, follow_symlinks=False)
    log.warning(
        "private.file_tightened",
        path=str(path),
        was=oct(stat.S_IMODE(st.st_mode)),
        now=oct(stat.S_IMODE(st.st_mode) & ~OTHERS),
    )
    return True


def loose(path: Path) -> int | None:
    """The mode of an existing file whose group or others bits are set, else None."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return None
    return mode if mode & OTHERS else None


def private_directory(path: Path, *, key: str, home: Path) -> None:
    """Create `path` 0700 if missing; refuse one that others own or could replace.

    `home` is never chmod-ed (its mode is the user's choice): a socket put right in it
    needs it 0700 already. Raises ConfigError naming `key` (the setting that chose the
    path) and the directory."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    uid = os.getuid()
    st = os.stat(path)  # a symlinked directory is judged by what it points to
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a directory", key=key)
    if st.st_uid != uid:
        raise ConfigError(
            f"the directory {path} belongs to uid {st.st_uid}, not to you (uid {uid}):"
            " whoever owns it can replace what tracesd puts there; refusing to use it."
            " Remove it, or choose a directory of your own",
            key=key,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & OTHERS and _same(path, home):
        raise ConfigError(
            f"{path} is your home directory, mode {oct(mode)}: a socket needs a directory"
            " only you can enter, and tracesd does not change your home's mode; put the"
            " socket in a directory of its own",
            key=key,
        )
    if mode & OTHERS:
        os.chmod(path, 0o700)
        log.warning("private.directory_tightened", path=str(path), was=oct(mode), now="0o700")
    _check_ancestors(path.resolve(), key=key, uid=uid)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_ancestors(directory: Path, *, key: str, uid: int) -> None:
    for ancestor in directory.parents:
        st = os.stat(ancestor)
        if st.st_uid not in (0, uid):
            raise ConfigError(
                f"{ancestor}, above {directory}, belongs to uid {st.st_uid}: another user could"
                " replace the directory tracesd uses; refusing. Choose a path under your home"
                " or $XDG_RUNTIME_DIR",
                key=key,
            )
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise ConfigError(
                f"{ancestor}, above {directory}, is writable by every user and not sticky:"
                " another user could replace the directory tracesd uses; refusing. Fix its"
                f" mode (chmod o-w {ancestor}) or choose another path",
                key=key,
            )
