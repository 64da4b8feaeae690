"""Bounded reads of session files: complete lines from the head, complete lines from the tail.

Nothing here reads a whole file into memory. A line is complete only when its `\\n` is on
disk; an unterminated last line (a writer mid-flush) is left for a later read. Lines are
split on `\\n` only, never with `str.splitlines()`, which also breaks on U+2028 and friends
that appear unescaped inside JSON strings.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from tracesd.errors import ParseError
from tracesd.models import SkippedLine
from tracesd.safeopen import NotRegular, open_regular

#: the first read of a head, and of a tail: enough for most sessions' metadata
FIRST_CHUNK = 16 * 1024
CHUNK = 64 * 1024
#: how far from the start we look for a session's metadata and first prompt
HEAD_BYTES = 4 * 1024 * 1024
#: how far from the end we look for the last activity
TAIL_BYTES = 128 * 1024
#: a longer line is skipped without being held in memory
MAX_LINE = 1024 * 1024
#: whole-file JSON documents larger than this are read only in part
MAX_DOCUMENT = 8 * 1024 * 1024


class SessionFile:
    """An open session file. Use as a context manager; errors become ParseError.

    The lines its reads pass over are listed in `skipped`; the adapter returns them with
    what it read (`models.Parsed`), and a ParseError leaving the block carries them.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # Never blocks on a FIFO, never reads a device (see safeopen). No symlinks: a
            # session file that is one (to /etc/passwd, to a file outside the agent's
            # root, to /proc/self/fd/0) is refused, never read.
            fd = open_regular(path, follow_symlinks=False, note=False)
        except NotRegular as exc:
            raise ParseError("not_a_file", str(exc)) from None
        except OSError as exc:
            raise _translate(exc, path) from None
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        #: lines skipped because they were longer than MAX_LINE
        self.oversize_lines = 0
        #: every line the reads passed over, in the order met
        self.skipped: list[SkippedLine] = []

    def __enter__(self) -> SessionFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.close()
        if isinstance(exc, ParseError) and not exc.skipped:
            exc.skipped = tuple(self.skipped)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer at the end of the file)."""
        return self._read(offset, size)

    def _read(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._file.fileno(), size, offset)
        except OSError as exc:
            raise _translate(exc, self.path) from None

    def head_lines(self, max_bytes: int = HEAD_BYTES, max_line: int = MAX_LINE) -> Iterator[bytes]:
        """Complete, non-blank lines from the start, up to `max_bytes` of the file."""
        for _, line in self.head_lines_at(max_bytes, max_line):
            yield line

    def head_lines_at(
        self, max_bytes: int = HEAD_BYTES, max_line: int = MAX_LINE
    ) -> Iterator[tuple[int, bytes]]:
        """`head_lines`, each with the byte offset where it starts. A line longer than
        `max_line` is skipped and noted in `skipped`."""
        limit = min(max_bytes, self.size)
        offset = 0
        line_start = 0
        pending = bytearray()
        skipping = False
        while offset < limit:
            chunk = self._read(offset, min(CHUNK if offset else FIRST_CHUNK, limit - offset))
            if not chunk:
                break
            chunk_at = offset
            offset += len(chunk)
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                if newline < 0:
                    if not skipping:
                        if len(pending) + len(chunk) - start > max_line:
                            pending.clear()
                            skipping = True
                            self.oversize_lines += 1
                        else:
                            pending += chunk[start:]
                    break
                end = chunk_at + newline + 1
                if skipping:
                    skipping = False
                    self.skipped.append(SkippedLine("oversize", line_start, end))
                else:
                    pending += chunk[start:newline]
                    if len(pending) > max_line:
                        self.oversize_lines += 1
                        self.skipped.append(SkippedLine("oversize", line_start, end))
                    elif pending.strip():
                        yield line_start, bytes(pending)
                    pending.clear()
                start = newline + 1
                line_start = end
        if skipping:  # its end is beyond what we read
            self.skipped.append(SkippedLine("oversize", line_start, None))

    def tail_lines(self, max_bytes: int = TAIL_BYTES) -> list[bytes]:
        """Complete, non-blank lines within the last `max_bytes`, oldest first."""
        return self.lines_before(self.size, max_bytes)[1]

    def lines_before(self, end: int, max_bytes: int) -> tuple[int, list[bytes]]:
        """Complete lines of the `max_bytes` before `end`, and where the first one starts.

        A line is complete when its newline is on disk and, unless it starts the file,
        the newline before it is inside the window too.
        """
        if end <= 0:
            return 0, []
        start = max(0, end - max_bytes - 1)
        data = self._read(start, end - start)
        last = data.rfind(b"\n")
        if last < 0:
            return end, []
        data = data[:last]
        first_start = start
        if start > 0:
            first = data.find(b"\n")
            if first < 0:
                return end, []
            data = data[first + 1 :]
            first_start = start + first + 1
        return first_start, [line for line in data.split(b"\n") if line.strip()]

    def read_document(self, max_bytes: int = MAX_DOCUMENT) -> bytes:
        """The first `max_bytes` of a whole-file document (all of it when smaller)."""
        return self._read(0, min(self.size, max_bytes))

    def read_tail(self, max_bytes: int = TAIL_BYTES) -> bytes:
        """The last `max_bytes` of the file (all of it when smaller)."""
        size = min(self.size, max_bytes)
        return self._read(self.size - size, size)


class Records:
    """The JSON records of a file's head, counting what was not usable and why."""

    def __init__(self, f: SessionFile) -> None:
        self._file = f
        self.count = 0
        self.garbage = 0
        self.binary = False
        #: when set, lines without this byte string are passed over undecoded
        self.only_containing: bytes | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for offset, line in self._file.head_lines_at():
            if self.only_containing is not None and self.only_containing not in line:
                continue
            record = decode_line(line)
            if record is None:
                self.garbage += 1
                binary = b"\x00" in line
                self.binary = self.binary or binary
                reason = "binary" if binary else "malformed"
                self._file.skipped.append(SkippedLine(reason, offset, offset + len(line) + 1))
                continue
            self.count += 1
            yield record

    def explain_none(self) -> None:
        """When no record was usable, raise the ParseError that says why (if anything was
        wrong: a file holding only a half-written line is simply not a session yet)."""
        if self.count:
            return
        f = self._file
        if f.size == 0:
            raise ParseError("empty", f"empty file: {f.path!r}")
        if self.binary:
            raise ParseError("binary", f"binary content, no JSON records: {f.path!r}")
        if self.garbage:
            raise ParseError("malformed", f"no valid JSON records: {f.path!r}")
        if f.oversize_lines:
            raise ParseError(
                "oversize", f"only lines longer than {MAX_LINE} bytes, skipped: {f.path!r}"
            )


def tail_records(f: SessionFile) -> Iterator[dict[str, Any]]:
    """The decoded records of the last TAIL_BYTES, newest first.

    Read in two windows, the small one first: stop iterating as soon as you know enough
    and most files cost one small read and a couple of decoded lines.
    """
    end = f.size
    for window in (FIRST_CHUNK, TAIL_BYTES):
        start, lines = f.lines_before(end, window)
        for line in reversed(lines):
            record = decode_line(line)
            if record is not None:
                yield record
        if start == 0:
            return
        end = start  # unchanged when the small window held no complete line


def decode_line(line: bytes) -> dict[str, Any] | None:
    """One JSONL record as a dict; None for malformed, non-object or absurdly nested lines."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _translate(exc: OSError, path: str) -> ParseError:
    if exc.errno == errno.ENOENT:
        return ParseError("vanished", f"file vanished before it could be read: {path!r}")
    if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ELOOP):
        return ParseError("not_a_file", f"not a readable file: {path!r} ({exc.strerror})")
    return ParseError("unreadable", f"cannot read {path!r}: {exc.strerror}")
