"""JavaScript's value rules that the CLI's readers depend on.

The CLI is JavaScript (a Bun bundle): it tests values for truthiness, trims with
`String.prototype.trim`, turns text into numbers with `Number()` and into times with
`Date.parse`, parses JSON into doubles and writes it back with `JSON.stringify`, prints
numbers with JavaScript's digits and measures and cuts strings in UTF-16 units. Python's
nearest function differs from each in ways a session can reach, and the differences land in
what is uploaded (a text, a number, an id's input). Each rule is here once; every expected
value in tests/test_messages_js.py is what Bun gives.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeGuard

# -- undefined, truthiness -------------------------------------------------------------------


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
    """`!!value` of a JSON value (`[]`, `{}` and `"0"` are true; 0, NaN and "" false)."""
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def nullish(value: Any) -> bool:
    """What `??` falls back on."""
    return value is None or value is UNDEFINED


# -- strings ---------------------------------------------------------------------------------

#: JavaScript's WhiteSpace and LineTerminator: what `trim` removes and `\s` matches (not
#: Python's `str.isspace`, which adds \x1c-\x1f and \x85 and lacks \ufeff)
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_RUNS = re.compile(f"[{WHITESPACE}]+")


def trim(text: str) -> str:
    """`text.trim()`."""
    return text.strip(WHITESPACE)


def squeeze(text: str) -> str:
    """`text.replace(/\\s+/g, " ").trim()`."""
    return trim(_RUNS.sub(" ", text))


def utf16_length(text: str) -> int:
    """`text.length`: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def slice16(text: str, end: int) -> str:
    """`text.slice(0, end)`: the first `end` UTF-16 units (a split pair stays split)."""
    if len(text) <= end // 2:
        return text
    units = text.encode("utf-16-le", "surrogatepass")[: 2 * max(0, end)]
    return units.decode("utf-16-le", "surrogatepass")


def string(value: Any) -> str:
    """`String(value)` of a JSON value, which is also what `${value}` shows."""
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, list):
        return ",".join("" if nullish(item) else string(item) for item in value)
    return "[object Object]"


# -- numbers ---------------------------------------------------------------------------------

#: the biggest integer a double holds exactly, plus one
_SAFE = 2**53
#: `Number()`'s decimal literal (ASCII digits only: Python's `\d` and `float` take others)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = re.compile(r"0(?:[xX]([0-9a-fA-F]+)|[oO]([0-7]+)|[bB]([01]+))")


def is_number(value: Any) -> TypeGuard[int | float]:
    """`typeof value === "number"` (a JSON bool is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: Any) -> TypeGuard[int | float]:
    """`Number.isFinite(value)`: a number, and neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def to_number(text: str) -> float:
    """`Number(text)` of a string: NaN when it is no numeric literal, 0 when it is blank."""
    body = trim(text)
    if not body:
        return 0.0
    if _DECIMAL.fullmatch(body):
        return float(body.replace("Infinity", "inf"))
    if radix := _RADIX.fullmatch(body):
        hexa, octal, binary = radix.groups()
        return float(int(hexa, 16) if hexa else int(octal, 8) if octal else int(binary, 2))
    return math.nan


def plain(value: int | float) -> int | float:
    """A double as the Python number that Python's `json` writes with JavaScript's digits:
    an integral one below 1e21 as an int (no `.0`; beyond 2**53, JavaScript's rounded
    digits, as `JSON.stringify` writes them), any other unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value) if abs(value) < _SAFE else int(number_text(value))
    return value


def number_text(value: int | float) -> str:
    """`String(n)`: the shortest digits that read back to the double, JavaScript's notation."""
    if isinstance(value, int) and abs(value) < _SAFE:
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < _SAFE:
        return str(int(value))
    digits, n = _shortest(value)
    sign = "-" if value < 0 else ""
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    e = n - 1
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of |value| and n with |value| = 0.digits * 10**n."""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    both = whole + frac
    digits = both.lstrip("0")
    n = len(whole) - (len(both) - len(digits)) + int(exp or 0)
    return digits.rstrip("0") or "0", n


def round_half_up(value: float) -> int:
    """`Math.round` of a finite number: the nearest integer, a tie toward +Infinity."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def to_fixed(value: float, places: int) -> str:
    """`value.toFixed(places)` (a tie rounds up, on the double's exact value)."""
    exact = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{exact:.{places}f}"


# -- JSON ------------------------------------------------------------------------------------


class NotJson(ValueError):
    """What `JSON.parse` throws on."""


def parse_json(text: str | bytes) -> Any:
    """`JSON.parse`: no NaN or Infinity, every number a double (an integral one as the int
    JavaScript prints for it, so Python writes it back as JavaScript does). NotJson where
    JavaScript throws, and where Python runs out of stack on a document nested too deep."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_int, parse_float=_float)
    except (ValueError, RecursionError) as error:
        raise NotJson(str(error)) from error


def read_json(path: str) -> Any:
    """`JSON.parse(fs.readFileSync(path, "utf-8"))`; OSError or NotJson."""
    with open(path, "rb") as handle:
        data = handle.read()
    return parse_json(data.decode("utf-8", "replace"))


def _no_constant(name: str) -> Any:
    raise NotJson(f"not JSON: {name}")


def _int(literal: str) -> int | float:
    if len(literal) < 16:  # below 10**15 < 2**53: exact as a double
        return int(literal)
    return plain(float(literal))


def _float(literal: str) -> int | float:
    return plain(float(literal))


def stringify(value: Any, indent: int = 0) -> str:
    """`JSON.stringify(value, null, indent)` of a JSON value (an undefined member left out)."""
    return _stringify(value, " " * indent, "")


def _stringify(value: Any, gap: str, at: str) -> str:
    if value is None or value is UNDEFINED:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return _quote(value)
    inner = at + gap
    if isinstance(value, list):
        items = [_stringify(v, gap, inner) for v in value]
        return _wrap("[", "]", items, gap, at, inner)
    if isinstance(value, dict):
        colon = ": " if gap else ":"
        members = [
            _quote(k) + colon + _stringify(value[k], gap, inner)
            for k in _key_order(value)
            if value[k] is not UNDEFINED
        ]
        return _wrap("{", "}", members, gap, at, inner)
    return "null"


def _wrap(open_: str, close: str, items: list[str], gap: str, at: str, inner: str) -> str:
    if not items:
        return open_ + close
    if not gap:
        return open_ + ",".join(items) + close
    return f"{open_}\n{inner}" + f",\n{inner}".join(items) + f"\n{at}{close}"


def object_values(value: dict[str, Any]) -> list[Any]:
    """`Object.values(value)`, in JavaScript's key order."""
    return [value[k] for k in _key_order(value)]


def _key_order(value: dict[str, Any]) -> list[str]:
    """A JavaScript object's own keys: array indices ascending first, then the others as
    inserted."""
    indices = sorted((k for k in value if _is_index(k)), key=int)
    return indices + [k for k in value if not _is_index(k)] if indices else list(value)


def _is_index(key: str) -> bool:
    return (
        key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1
    )


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_ESCAPED = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')


def _quote(text: str) -> str:
    """A JSON string as JavaScript writes it (a lone surrogate escaped, no other non-ASCII)."""
    return '"' + _ESCAPED.sub(_escape, text) + '"'


def _escape(found: re.Match[str]) -> str:
    ch = found.group()
    return _ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


# -- time ------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the ISO 8601 forms `Date.parse` reads (Bun: `T`, `t` or a space; no comma fraction)
_ISO = re.compile(
    r"([+-]\d{6}|\d{4})(?:-(\d\d)(?:-(\d\d))?)?"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?([Zz]|[+-]\d\d:?\d\d)?)?",
    re.ASCII,
)


def date_parse(text: str) -> int | None:
    """`Date.parse(text)` in ms (None: NaN) for the ISO 8601 forms (a date alone is UTC, a
    date and time without a zone local time; a day past the month's end up to 31 rolls
    over, as in Bun) and RFC 2822 dates. Bun's legacy forms ("2026/11/20", "Nov 20 2026")
    are not read: no agent writes them. Local time is this process's, as the CLI's is the
    CLI's: both run as the user, on the same machine."""
    found = _ISO.fullmatch(text)
    if not found:
        return _rfc2822(text)
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    fields = [int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)]
    if not (1 <= fields[0] <= 12 and 1 <= fields[1] <= 31 and fields[3] < 60 and fields[4] < 60):
        return None
    if fields[2] > 24 or (fields[2] == 24 and (fields[3] or fields[4] or int(fraction or 0))):
        return None
    try:
        start = datetime(int(year), fields[0], 1)
    except ValueError:
        return None
    moment = start + timedelta(
        days=fields[1] - 1, hours=fields[2], minutes=fields[3], seconds=fields[4]
    )
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    if hour is None or (zone or "").upper() == "Z":
        moment = moment.replace(tzinfo=UTC)
    elif zone:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment.replace(tzinfo=UTC) - sign * offset
    else:
        moment = moment.astimezone()
    return _ms(moment) + millis


def _rfc2822(text: str) -> int | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return _ms(moment)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def date_time(value: Any) -> int | None:
    """`new Date(value).getTime()` of a JSON value (None: NaN; null is 0, true 1)."""
    if value is None or value is True or value is False:
        return int(bool(value))
    if is_number(value):
        return math.trunc(value) if math.isfinite(value) and abs(value) <= 8.64e15 else None
    if value is UNDEFINED:
        return None
    return date_parse(string(value))


def now_ms() -> int:
    """`Date.now()`."""
    return time.time_ns() // 1_000_000


def mtime_ms(path: str) -> int | float:
    """`fs.statSync(path).mtimeMs` (0 when it cannot be read, as the CLI's helpers say)."""
    try:
        stat = os.stat(path)
    except OSError:
        return 0
    seconds, nanos = divmod(stat.st_mtime_ns, 1_000_000_000)
    return plain(seconds * 1e3 + nanos / 1e6)


# -- the CLI's own small value helpers, which several of its adapters repeat -----------------


def pick_string(*values: Any) -> str | None:
    """The CLI's `pickString`: the first value that is a string with more than white space,
    trimmed."""
    for value in values:
        if isinstance(value, str) and (trimmed := trim(value)):
            return trimmed
    return None


def record(value: Any) -> dict[str, Any] | None:
    """The CLI's `asRecord` (`asTranscriptRecord`): an object that is no array, else None."""
    return value if isinstance(value, dict) else None


def first(*values: Any) -> Any:
    """`a ?? b ?? ...`: the first value that is neither null nor undefined, else None."""
    return next((value for value in values if not nullish(value)), None)


def timestamp(value: Any, fallback: float) -> float:
    """The CLI's `parseTimestamp` (`parseTranscriptTimestamp`, `parseTimestampValue`):
    seconds or milliseconds as a number or numeric text (`Number()`), else a date
    (`Date.parse`), in milliseconds; else `fallback`. The double as it is (no `plain`)."""
    if is_finite(value):
        return value * 1000 if value < 1_000_000_000_000 else value
    if isinstance(value, str):
        number = to_number(value)
        if math.isfinite(number):
            return number * 1000 if number < 1_000_000_000_000 else number
        parsed = date_parse(value)
        if parsed is not None:
            return parsed
    return fallback


def truncate(text: str, limit: int) -> str:
    """The CLI's `truncateText`: whole when at most `limit` UTF-16 units, else its first
    `limit - 1` units and an ellipsis (a surrogate pair may be cut, as in JavaScript)."""
    if utf16_length(text) <= limit:
        return text
    return slice16(text, max(0, limit - 1)) + "\u2026"
