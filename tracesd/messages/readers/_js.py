"""JavaScript's readings of JSON values, as the CLI's adapters make them.

The CLI's readers test values the JavaScript way (truthiness, `trim`, `Date.parse`, string
lengths in UTF-16 units); a port that tests them the Python way reads some sessions
differently. These are the few a reader needs, spelled out once.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

#: JavaScript's whitespace and line terminators (what `String.prototype.trim` removes)
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Undefined:
    """JavaScript's `undefined`: a key JSON.stringify leaves out (JSON `null` stays)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = Undefined()


def get(value: Any, key: str) -> Any:
    """`value?.key`: UNDEFINED when absent or when `value` is not an object."""
    if isinstance(value, dict):
        return value.get(key, UNDEFINED)
    return UNDEFINED


def defined(data: dict[str, Any]) -> dict[str, Any]:
    """An object as JSON.stringify writes it: keys whose value is undefined left out."""
    return {k: v for k, v in data.items() if v is not UNDEFINED}


def truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True  # objects and arrays, empty or not


def nullish(value: Any) -> bool:
    """What `??` falls back on."""
    return value is None or value is UNDEFINED


def number(value: Any) -> bool:
    """`typeof value === "number"` for a JSON value."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def trim(text: str) -> str:
    return text.strip(WHITESPACE)


def date_parse(text: str) -> int | None:
    """`Date.parse` of the ISO forms agents write (ms since epoch), None when it is NaN.
    A date-time without a zone is read as UTC (JavaScript reads it as local time; tracesd
    runs as a service whose zone is not the user's)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def slice16(text: str, end: int) -> str:
    """`text.slice(0, end)`: the first `end` UTF-16 units (a split pair stays split)."""
    if len(text) <= end // 2:
        return text
    units = text.encode("utf-16-le", "surrogatepass")[: 2 * end]
    return units.decode("utf-16-le", "surrogatepass")


def key_text(value: Any) -> str:
    """A value as a template string shows it (`${value}`)."""
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
