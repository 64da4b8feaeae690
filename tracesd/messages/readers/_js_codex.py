"""The few JavaScript built-ins the CLI's readers lean on, as JavaScript computes them.

A reader ported from the CLI's bundle must trim, stringify, round and parse dates the way
the CLI does, or the uploaded text (and with it the ids' inputs) differs by a space.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

#: JavaScript's `\s` (and what `String.prototype.trim` strips)
WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_EDGES = re.compile(f"^[{WHITESPACE}]+|[{WHITESPACE}]+$")
_RUNS = re.compile(f"[{WHITESPACE}]+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INDEX = re.compile(r"0|[1-9]\d{0,9}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def trim(text: str) -> str:
    """`text.trim()`."""
    return _EDGES.sub("", text)


def squeeze(text: str) -> str:
    """`text.replace(/\\s+/g, " ").trim()`."""
    return trim(_RUNS.sub(" ", text))


def truthy(value: Any) -> bool:
    """JavaScript's truthiness of a JSON value (`[]` and `{}` are true)."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def is_number(value: Any) -> TypeGuard[int | float]:
    """`typeof value === "number"`."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: Any) -> TypeGuard[int | float]:
    """`Number.isFinite(value)`."""
    return is_number(value) and math.isfinite(value)


def number(value: int | float) -> int | float:
    """A number as JSON.stringify writes it: an integral float has no `.0`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def round_half_up(value: float) -> int:
    """`Math.round`."""
    return math.floor(value + 0.5)


def string(value: Any) -> str:
    """`String(value)` of a JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if is_number(value):
        return _number_text(value)
    if isinstance(value, list):
        return ",".join("" if item is None else string(item) for item in value)
    return "[object Object]"


def stringify(value: Any, indent: int | None = None) -> str:
    """`JSON.stringify(value, null, indent)` of a JSON value."""
    return json.dumps(
        _plain(value),
        indent=indent,
        ensure_ascii=False,
        separators=(",", ": ") if indent else (",", ":"),
    )


def parse_json(text: str) -> Any:
    """`JSON.parse(text)`; ValueError where it throws (NaN and Infinity included)."""
    return json.loads(text, parse_constant=_no_constant)


def date_parse(text: str) -> int | None:
    """`Date.parse(text)` for the ISO forms agents write (None: NaN). A date alone is UTC,
    a date and time without a zone is local time, as in JavaScript."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC) if "T" not in candidate else parsed.astimezone()
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def to_number(text: str) -> int | float | None:
    """`Number(text)` when finite (None: NaN or infinite): decimal, or 0x/0o/0b integers;
    a blank string is 0."""
    body = trim(text)
    if not body:
        return 0
    lowered = body.lower()
    try:
        if lowered.startswith(("0x", "0o", "0b")):
            return int(body, 0)
        if not _DECIMAL.fullmatch(body):
            return None
        value = float(body)
    except ValueError:
        return None
    return number(value) if math.isfinite(value) else None


def object_values(value: dict[str, Any]) -> list[Any]:
    """`Object.values(value)`: integer-like keys first, ascending, then the others."""
    indices = sorted((k for k in value if _INDEX.fullmatch(k)), key=int)
    return [value[k] for k in indices] + [v for k, v in value.items() if not _INDEX.fullmatch(k)]


def now_ms() -> int:
    """`Date.now()`."""
    return int(time.time() * 1000)


def _number_text(value: int | float) -> str:
    value = number(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")
