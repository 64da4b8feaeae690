"""`[capture] exclude`: whether a session's working directory is one the user excluded,
however either side spells it.

A directory has many spellings: `/a//b`, `/a/./b`, `/a/x/../b`, `/a/b/`, a symlink to it,
`~/b`. Both the patterns and the directory are compared in each of their forms: as
written, normalised (`os.path.normpath`, one leading slash), and resolved
(`os.path.realpath`, which follows the symlinks that exist). A directory is excluded when
any form of it matches any form of a pattern: when in doubt, a session is not captured.
A pattern's glob part (from its first component holding `*` or `?`) is kept as written;
its literal part before it is normalised and resolved.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from functools import lru_cache


class Exclusions:
    """The compiled `[capture] exclude` patterns; safe to call from any thread."""

    def __init__(self, patterns: Iterable[str]) -> None:
        forms = {form for p in patterns if p for form in _pattern_forms(p)}
        self._globs = [glob(f) for f in sorted(forms)]
        self.excluded = lru_cache(maxsize=4096)(self._excluded)

    def __bool__(self) -> bool:
        return bool(self._globs)

    def _excluded(self, directory: str) -> bool:
        """Whether `directory` (or another spelling of it) matches a pattern."""
        if not self._globs:
            return False
        return any(g.fullmatch(form) for form in _forms(directory) for g in self._globs)


def _forms(path: str) -> set[str]:
    """`path` as written, normalised and resolved (the two latter only when absolute)."""
    forms = {path}
    if path == "~" or path.startswith("~/"):
        path = os.path.expanduser(path)
        forms.add(path)
    if not path.startswith("/"):
        return forms
    forms.add(normalised(path))
    with contextlib.suppress(OSError, ValueError):  # a NUL byte, a lone surrogate, a loop
        forms.add(os.path.realpath(path))  # `..` after a symlink as the kernel reads it
    return forms


def _pattern_forms(pattern: str) -> set[str]:
    parts = pattern.split("/")
    first_glob = next((i for i, part in enumerate(parts) if "*" in part or "?" in part), None)
    if first_glob is None:
        return _forms(pattern)
    if not pattern.startswith("/"):
        return {pattern}  # `**/secret/**`: matched against every form of the directory
    literal, rest = "/".join(parts[:first_glob]) or "/", "/".join(parts[first_glob:])
    rest = re.sub(r"/+", "/", rest)
    return {pattern} | {f"{form.rstrip('/')}/{rest}" for form in _forms(literal)}


def normalised(path: str) -> str:
    """`os.path.normpath`, and one leading slash (POSIX leaves `//a` alone)."""
    if not path:
        return path
    normal = os.path.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("/") else normal


def glob(pattern: str) -> re.Pattern[str]:
    """A path glob: `**` crosses directories, `*` and `?` do not; `dir/**` matches dir too."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    regex = "".join(out)
    if regex.endswith("/.*"):
        regex = regex[: -len("/.*")] + "(/.*)?"
    return re.compile(regex)
