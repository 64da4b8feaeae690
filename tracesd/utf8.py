"""Text SQLite and JSON-over-HTTP can carry: valid UTF-8, so no lone surrogates.

Python strings may hold lone surrogates (`\\udc80`): JSON escapes them (`"\\udc80"`) and
Linux paths decode undecodable bytes to them (surrogateescape), but neither SQLite nor a
UTF-8 body can hold one. Every check for them is this one.
"""

from __future__ import annotations


def encodable(text: str) -> bool:
    """Whether `text` is valid UTF-8 once encoded: no lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
