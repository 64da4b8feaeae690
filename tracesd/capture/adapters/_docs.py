"""Whole-file JSON documents (Amp threads, Cline tasks, Copilot and OpenCode sessions).

A document up to MAX_DOCUMENT is parsed whole. A larger one is never loaded: what an
adapter needs is decoded from a head window and a tail window, which is where sessions
keep it (ids, times and the first prompt near the start; the latest activity, and for some
agents the environment, near the end). These partial reads find members by their key
(`"key":`), which cannot occur unescaped inside a JSON string, so a hit is always a real
member, if not always a top-level one; they are the fallback for rare huge files only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tracesd.capture.adapters._files import HEAD_BYTES, MAX_DOCUMENT, TAIL_BYTES, SessionFile
from tracesd.errors import ParseError

_DECODER = json.JSONDecoder()


class Document:
    """A whole-file JSON document: `whole` when it is small enough, else head and tail."""

    def __init__(self, f: SessionFile, *, max_bytes: int = MAX_DOCUMENT) -> None:
        self.path = f.path
        self.whole: Any = None
        #: a large document's first HEAD_BYTES and last TAIL_BYTES, as text
        self.head = ""
        self.tail = ""
        if f.size == 0:
            raise ParseError("empty", f"empty file: {f.path!r}")
        if f.size <= max_bytes:
            data = f.read_document(max_bytes)
            if b"\x00" in data:
                raise ParseError("binary", f"binary content, not JSON: {f.path!r}")
            try:
                self.whole = json.loads(data)
            except (ValueError, RecursionError):
                # Whole-file writers truncate and rewrite: we may have caught one half-way.
                # The write that completes the file brings another event.
                raise ParseError(
                    "incomplete", f"not a complete JSON document: {f.path!r}"
                ) from None
        else:
            self.head = f.read_document(min(HEAD_BYTES, max_bytes)).decode("utf-8", "replace")
            self.tail = f.read_tail(TAIL_BYTES).decode("utf-8", "replace")

    @property
    def partial(self) -> bool:
        return self.whole is None

    def require(self, kind: type) -> Any:
        """The whole document, which must be a `kind` (dict or list); ParseError otherwise."""
        if not isinstance(self.whole, kind):
            raise ParseError("malformed", f"not a session document: {self.path!r}")
        return self.whole

    def member(self, key: str, *, in_tail: bool = False) -> Any:
        """A large document's member `key`: the first in the head (the last in the tail)."""
        text = self.tail if in_tail else self.head
        starts = [m.end() for m in _key(key).finditer(text)]
        for start in reversed(starts) if in_tail else starts:
            if (found := decode_at(text, start)) is not None:
                return found[0]
        return None

    def values(self, key: str) -> list[Any]:
        """Every decodable value of members named `key` in a large document's tail."""
        found = (decode_at(self.tail, m.end()) for m in _key(key).finditer(self.tail))
        return [f[0] for f in found if f is not None]

    def leading_items(self, key: str | None = None) -> list[Any]:
        """The items of a large document's array `key` (None: the document itself is the
        array) that are complete within the head, in order."""
        text = self.head
        pattern = r"\s*\[" if key is None else _key(key).pattern + r"\s*\["
        found = (re.match if key is None else re.search)(pattern, text)
        if found is None:
            return []
        items: list[Any] = []
        pos = found.end()
        while (decoded := decode_at(text, pos)) is not None:
            value, pos = decoded
            items.append(value)
            pos = _skip(text, pos)
            if text[pos : pos + 1] != ",":
                break
            pos += 1
        return items


def decode_at(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value starting at `start` (after blanks) and where it ends; None when no
    complete value starts there."""
    try:
        return _DECODER.raw_decode(text, _skip(text, start))
    except (ValueError, RecursionError):
        return None


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _key(key: str) -> re.Pattern[str]:
    return re.compile(re.escape(json.dumps(key)) + r"\s*:")
