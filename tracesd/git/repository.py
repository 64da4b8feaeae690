"""Finding the repository a directory is in, and fingerprinting the files git answers from.

Both run on a worker thread and only stat and read small files, through safeopen: a FIFO
or a device in a repository (as HEAD, a branch ref, packed-refs, a config file) is never
waited on or read. Such a file is reported in the fingerprint's `special`: git would
block on the FIFO until its deadline, or read the device until then (a branch ref that is
/dev/zero grows git by gigabytes a second), so the resolver does not run git at all.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from tracesd.safeopen import REFUSED, NotRegular, kind_of, read_head

#: what a repository's answers are cached under: HEAD's content and stats of the files
#: git reads them from
Print = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Repo:
    worktree: str  # the directory that holds `.git`
    dotgit: str
    gitdir: str
    commondir: str


@dataclass(frozen=True, slots=True)
class Fingerprint:
    print: Print
    #: a file git would read that is not a regular file (a FIFO, a device, ...)
    special: NotRegular | None = None


def discover(directory: str) -> Repo | None:
    """The repository `directory` is in, found the way git does: the nearest `.git` above."""
    current = os.path.abspath(directory)
    if not os.path.isdir(current):
        return None
    while True:
        dotgit = os.path.join(current, ".git")
        try:
            mode = os.stat(dotgit).st_mode
        except OSError:
            mode = 0
        if stat.S_ISDIR(mode):
            gitdir = dotgit
            break
        if stat.S_ISREG(mode):
            pointer = _read(dotgit) or b""
            if not pointer.startswith(b"gitdir:"):
                return None
            target = pointer[7:].strip().decode("utf-8", "surrogateescape")
            gitdir = os.path.normpath(os.path.join(current, target))
            break
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    common = _read(os.path.join(gitdir, "commondir"))
    commondir = (
        os.path.normpath(os.path.join(gitdir, common.strip().decode("utf-8", "surrogateescape")))
        if common
        else gitdir
    )
    return Repo(worktree=current, dotgit=dotgit, gitdir=gitdir, commondir=commondir)


def fingerprint(repo: Repo, global_configs: tuple[str, ...]) -> Fingerprint:
    """HEAD's content and the stats of the files git answers from, and the first of them
    (HEAD included) that is not a regular file."""
    special: NotRegular | None = None
    head_path = os.path.join(repo.gitdir, "HEAD")
    try:
        head: bytes | None = read_head(head_path, 4096)
    except NotRegular as exc:
        head, special = None, exc
    except OSError:
        head = None
    ref_path: str | None = None
    if head is not None and head.startswith(b"ref:"):
        refname = head[4:].strip().decode("utf-8", "replace")
        if refname.startswith("refs/") and ".." not in refname:
            ref_path = os.path.join(repo.commondir, refname)
    stats = [_stat(repo.dotgit)]
    for path in (
        os.path.join(repo.gitdir, "commondir"),
        ref_path,
        os.path.join(repo.commondir, "packed-refs"),
        os.path.join(repo.commondir, "config"),
        os.path.join(repo.gitdir, "config.worktree"),
        os.path.join(repo.commondir, "reftable", "tables.list"),
        *global_configs,
    ):
        st = _stat(path)
        stats.append(st)
        if st is not None and special is None and not stat.S_ISREG(st[3]):
            assert path is not None
            special = NotRegular(path, kind_of(st[3]))
            REFUSED.note(special)
    return Fingerprint((head, *stats), special)


def global_configs(environ: Mapping[str, str]) -> tuple[str, ...]:
    home = environ.get("HOME", "")
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return (
        os.path.join(home, ".gitconfig"),
        os.path.join(xdg, "git", "config"),
        "/etc/gitconfig",
    )


def _read(path: str, limit: int = 4096) -> bytes | None:
    try:
        return read_head(path, limit)  # a FIFO or a device is refused, never waited on
    except OSError:
        return None


def _stat(path: str | None) -> tuple[int, int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
