"""JavaScript's value rules, where a ported reader depends on them to read as the CLI does.

The CLI is JavaScript: it trims strings with `String.prototype.trim`, measures and cuts them
in UTF-16 code units, turns strings into numbers with `Number()` and dates with
`Date.parse`, and pretty-prints with `JSON.stringify(value, null, 2)`. Each differs from
Python's nearest function in ways a session can reach, so they are spelled out here.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from datetime import datetime
from typing import Any

#: JavaScript's WhiteSpace and LineTerminator (what `trim` removes)
_JS_SPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_RADIX = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_ISO = re.compile(
    r"([+-]\d{6}|\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_INDEX_KEY = re.compile(r"0|[1-9]\d{0,9}")
_MAX_SAFE = 2**53


def parse(text: str) -> Any:
    """`JSON.parse`, which knows no NaN or Infinity (ValueError, as json.loads)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def trim(text: str) -> str:
    return text.strip(_JS_SPACE)


def pick_string(*values: Any) -> str | None:
    """The CLI's `pickString`: the first value that is a string with more than white space,
    trimmed."""
    for value in values:
        if isinstance(value, str) and (trimmed := trim(value)):
            return trimmed
    return None


def is_number(value: Any) -> bool:
    """`typeof value === "number"` (a JSON bool is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """`Number.isFinite(value)`: a number, and neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def number(text: str) -> float:
    """`Number(text)`: NaN when the string is not a numeric literal (white space is 0)."""
    body = trim(text)
    if not body:
        return 0.0
    if _DECIMAL.fullmatch(body):
        return float(body.replace("Infinity", "inf"))
    if radix := _RADIX.fullmatch(body):
        digits = radix.group(1)
        return float(int(digits[1:], {"x": 16, "o": 8, "b": 2}[digits[0].lower()]))
    return math.nan


def date_parse(text: str) -> float:
    """`Date.parse(text)` for the ISO forms (date only: UTC; a time without a zone: local
    time, as JavaScript reads it); NaN for anything else."""
    found = _ISO.fullmatch(trim(text))
    if found is None:
        return math.nan
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        return math.nan
    ms = int((fraction or "0")[:3].ljust(3, "0"))
    if zone is None and hour is not None:
        return moment.timestamp() * 1000 + ms  # local time
    seconds = calendar.timegm(moment.timetuple())
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return float(seconds * 1000 + ms)


def date_time(value: Any) -> float:
    """`new Date(value).getTime()` for a JSON value."""
    if is_number(value):
        return float(math.trunc(value)) if math.isfinite(value) else math.nan
    if isinstance(value, str):
        return date_parse(value)
    return math.nan


def plain(value: float) -> int | float:
    """A number as JavaScript prints it: an integral one without its `.0`."""
    if math.isfinite(value) and value == math.trunc(value) and abs(value) < 1e21:
        return int(value)
    return value


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def truncate(text: str, limit: int) -> str:
    """The CLI's `truncateText`: whole when at most `limit` UTF-16 units, else its first
    `limit - 1` units and an ellipsis (a surrogate pair may be cut, as in JavaScript)."""
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) // 2 <= limit:
        return text
    kept = units[: 2 * max(0, limit - 1)]
    return kept.decode("utf-16-le", "surrogatepass") + "\u2026"


def stringify(value: Any, indent: int = 2) -> str:
    """`JSON.stringify(value, null, indent)` of a parsed JSON value."""
    return _dump(value, indent, "")


def _dump(value: Any, indent: int, pad: str) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if abs(value) <= _MAX_SAFE else number_text(float(value))
    if isinstance(value, float):
        return number_text(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    inner = pad + " " * indent
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [_dump(item, indent, inner) for item in value]
        return "[\n" + ",\n".join(inner + item for item in items) + "\n" + pad + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        entries = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, indent, inner)}"
            for k, v in _js_order(value)
        ]
        return "{\n" + ",\n".join(entries) + "\n" + pad + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _js_order(value: dict[str, Any]) -> list[tuple[str, Any]]:
    """An object's properties in JavaScript's order: array indices ascending, then the rest
    as inserted."""
    indices = [(k, v) for k, v in value.items() if _INDEX_KEY.fullmatch(k) and int(k) < 2**32 - 1]
    rest = [
        (k, v) for k, v in value.items() if not (_INDEX_KEY.fullmatch(k) and int(k) < 2**32 - 1)
    ]
    return sorted(indices, key=lambda kv: int(kv[0])) + rest


def number_text(value: float) -> str:
    """`String(value)`: the shortest round trip, with JavaScript's exponent rules."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits = repr(abs(value))
    # the shortest digits: from repr, whichever notation it used
    if "e" in digits:
        head, _, tail = digits.partition("e")
        shortest, point = head.replace(".", "").rstrip("0") or "0", int(tail) + 1
    else:
        whole, _, frac = digits.partition(".")
        frac = frac.rstrip("0")
        if whole.strip("0"):
            shortest = (whole.lstrip("0") + frac).rstrip("0") or "0"
            point = len(whole.lstrip("0"))
        else:
            stripped = frac.lstrip("0")
            shortest, point = stripped.rstrip("0"), -(len(frac) - len(stripped))
    k, n = len(shortest), point
    if k <= n <= 21:
        return sign + shortest + "0" * (n - k)
    if 0 < n <= 21:
        return sign + shortest[:n] + "." + shortest[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + shortest
    exp = n - 1
    mark = "+" if exp > 0 else "-"
    body = shortest[0] + ("." + shortest[1:] if k > 1 else "")
    return f"{sign}{body}e{mark}{abs(exp)}"
