"""Reading what was appended to a JSON-lines session since the last read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tracesd.messages.readers import Position, Unreadable, _js

#: the most one read takes in; a longer backlog is read in several (`Read.more`)
CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Lines:
    #: each complete line appended since the position, parsed (None: not a JSON object)
    records: list[dict[str, Any] | None]
    #: where the next read starts: past the last complete line
    offset: int
    file: str
    #: the file was replaced or shrank since `position`: the caller starts over
    restarted: bool
    more: bool


def appended(path: str, position: Position, chunk: int = CHUNK_BYTES) -> Lines:
    """The complete lines past `position.offset` (a line still being written waits for its
    newline). A file that was replaced or truncated is read again from its start."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            file = f"{stat.st_dev}:{stat.st_ino}"
            start = position.offset
            restarted = (position.file not in ("", file)) or stat.st_size < start
            if restarted:
                start = 0
            handle.seek(start)
            data = handle.read(chunk)
    except OSError as error:
        raise Unreadable(f"{path}: {error.strerror or error}") from error
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) < chunk:
            return Lines([], start, file, restarted, False)
        # one line longer than a chunk: take it whole
        return _long_line(path, start, file, restarted)
    complete = data[: end + 1]
    records = [_record(line) for line in complete.splitlines() if line.strip()]
    offset = start + len(complete)
    return Lines(records, offset, file, restarted, len(data) == chunk)


def _long_line(path: str, start: int, file: str, restarted: bool) -> Lines:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            line = handle.readline()
    except OSError as error:
        raise Unreadable(f"{path}: {error.strerror or error}") from error
    if not line.endswith(b"\n"):
        return Lines([], start, file, restarted, False)
    return Lines([_record(line)], start + len(line), file, restarted, True)


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        value = _js.parse_json(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
