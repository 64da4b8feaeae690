"""Text bound for a terminal, made safe: the one place it is done.

A trace id, a branch, a remote URL, a directory or a server's error message can carry
bytes a terminal obeys: ESC and CSI sequences (colours, cursor moves, a window title, a
clipboard write), C1 controls, DEL, and Unicode format characters that reorder what is
shown (U+202E RIGHT-TO-LEFT OVERRIDE, isolates, zero-width joiners). Each such character
is replaced by its Python escape, visibly: ESC -> `\\x1b`, CSI U+009B -> `\\x9b`,
U+202E -> `\\u202e`, a newline inside a value -> `\\n`. Classes: Unicode categories Cc
(C0, DEL, C1), Cf (format), Cs (lone surrogates), Zl and Zp (line and paragraph
separators).

`value` cleans the data a text renderer formats (every string in it, recursively), so a
value cannot forge a line; `text` (and `show`, which prints) cleans a finished text and
keeps its newlines and tabs. JSON output needs neither: `json.dumps` (ensure_ascii, its
default) writes every non-printable or non-ASCII character as a `\\uXXXX` escape.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import unicodedata
from functools import lru_cache
from typing import Any, TextIO

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: the ASCII and Latin-1 controls, the format characters and separators beyond them
_CANDIDATE = re.compile(r"[^\x20-\x7e\xa0-\xac\xae-\u05ff]")
#: the same in a finished text, where a tab is layout (a plist's indentation)
_CANDIDATE_IN_TEXT = re.compile(r"[^\t\x20-\x7e\xa0-\xac\xae-\u05ff]")


def escape(text: str) -> str:
    """`text` with every unsafe character replaced by its escape (newlines too)."""
    return _CANDIDATE.sub(_escaped, text)


def text(text: str) -> str:
    """A finished text made safe, its newlines (and tabs) kept."""
    return "\n".join(_CANDIDATE_IN_TEXT.sub(_escaped, line) for line in text.split("\n"))


def show(output: str, file: TextIO | None = None) -> None:
    """Print text for a person (stdout by default), made safe."""
    print(text(output), file=file or sys.stdout)


def value(data: Any) -> Any:
    """`data` with every string in it (dict keys, list items, dataclass fields) escaped;
    numbers, booleans and None as they are."""
    if isinstance(data, str):
        return escape(data)
    if isinstance(data, dict):
        return {value(k): value(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(value(v) for v in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        fields = {f.name: value(getattr(data, f.name)) for f in dataclasses.fields(data)}
        return dataclasses.replace(data, **fields)
    return data


def _escaped(match: re.Match[str]) -> str:
    return _escape_char(match.group())


@lru_cache(maxsize=1024)
def _escape_char(ch: str) -> str:
    if unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
        return ch
    code = ord(ch)
    if ch in "\n\t\r":
        return repr(ch)[1:-1]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
