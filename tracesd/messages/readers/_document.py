"""Sessions kept as one document (or a few files): read whole again, only once changed.

A whole-document reader keeps the files' fingerprint in `Position.state["stamp"]` and
returns no events while it is the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tracesd.messages.readers import Position, Unreadable, _js


def stamp(*paths: str | None) -> str:
    """The fingerprint of the files (`-` for one that cannot be stat'ed; None is skipped):
    it changes when any of them is written, replaced, created or removed."""
    parts = []
    for path in paths:
        if path is None:
            continue
        try:
            stat = os.stat(path)
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{stat.st_dev}:{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}")
    return "|".join(parts)


def unchanged(position: Position, fingerprint: str) -> bool:
    return position.state.get("stamp") == fingerprint


def after(fingerprint: str) -> Position:
    """The position after a whole read of the files with that fingerprint."""
    return Position(0, {"stamp": fingerprint})


@dataclass(frozen=True)
class Changed:
    data: bytes
    position: Position


def read_if_changed(path: str, position: Position) -> Changed | None:
    """The file's bytes and the position after them, or None when it has not changed since
    `position` (fingerprinted and read through one open, so the two agree)."""
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            fingerprint = f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
            if unchanged(position, fingerprint):
                return None
            data = handle.read()
    except OSError as error:
        raise Unreadable(f"{path}: {error.strerror or error}") from error
    return Changed(data, after(fingerprint))


def read_json(path: str) -> Any:
    """The document's JSON, read as the CLI reads it (`_js.read_json`); Unreadable when the
    file cannot be read or is not JSON."""
    try:
        return _js.read_json(path)
    except OSError as error:
        raise Unreadable(f"{path}: {error.strerror or error}") from error
    except _js.NotJson as error:
        raise Unreadable(f"{path}: not JSON ({error})") from error
