"""JavaScript's reading of values, for readers that port the CLI's code over whole JSON
documents: `JSON.parse`, `JSON.stringify`, `String(x)`, `Number(text)`, `Date.parse`,
`String.prototype.trim` and `fs.statSync(p).mtimeMs`, where Python's own would give a
different text or number for the same input (the CLI puts these texts and numbers in what
it uploads)."""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: what `String.prototype.trim` removes (WhiteSpace and LineTerminator)
_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: a JSON document's biggest exact integer (JavaScript numbers are doubles)
_SAFE = 2**53


class NotJson(ValueError):
    """What `JSON.parse` throws on."""


def trim(text: str) -> str:
    return text.strip(_SPACE)


def loads(text: str) -> Any:
    """`JSON.parse`: no NaN or Infinity, numbers as doubles (an integral one as an int so
    it prints as JavaScript prints it)."""

    def constant(name: str) -> Any:
        raise NotJson(name)

    try:
        return json.loads(text, parse_constant=constant, parse_int=_number, parse_float=_number)
    except (ValueError, RecursionError) as error:
        raise NotJson(str(error)) from error


def read(path: str) -> Any:
    """`JSON.parse(fs.readFileSync(path, "utf-8"))`; OSError or NotJson."""
    with open(path, "rb") as handle:
        data = handle.read()
    return loads(data.decode("utf-8", "replace"))


def _number(literal: str) -> int | float:
    value = float(literal)
    if math.isinf(value):
        return value
    if value.is_integer() and abs(value) < 1e21:
        # the integer JavaScript prints for the double (so Python prints the same)
        return int(number_text(value))
    return value


def number_text(value: float) -> str:
    """`String(n)` of a finite or infinite double."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < _SAFE:
        return str(int(value))
    digits, exponent = _shortest(float(value))
    sign = "-" if value < 0 else ""
    k, n = len(digits), exponent
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
    """The shortest round-trip digits of |value| and n with value = 0.digits * 10**n."""
    text = repr(abs(value))
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    shift = len(whole) - (len(whole + frac) - len((whole + frac).lstrip("0")))
    digits = digits.rstrip("0") or "0"
    return digits, shift + int(exp or 0)


def string(value: Any) -> str:
    """`String(value)` of a JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if v is None else string(v) for v in value)
    return "[object Object]"


def stringify(value: Any, indent: int = 0) -> str:
    """`JSON.stringify(value, null, indent)` of a JSON value."""
    return _stringify(value, " " * indent, "")


def _stringify(value: Any, gap: str, at: str) -> str:
    if value is None or value is True or value is False:
        return string(value)
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
        members = [_quote(k) + colon + _stringify(value[k], gap, inner) for k in _key_order(value)]
        return _wrap("{", "}", members, gap, at, inner)
    return "null"


def _wrap(open_: str, close: str, items: list[str], gap: str, at: str, inner: str) -> str:
    if not items:
        return open_ + close
    if not gap:
        return open_ + ",".join(items) + close
    return f"{open_}\n{inner}" + f",\n{inner}".join(items) + f"\n{at}{close}"


def _key_order(value: dict[str, Any]) -> list[str]:
    """A JavaScript object's own keys: array indices ascending first, then the others."""
    indices = sorted((k for k in value if _is_index(k)), key=int)
    return indices + [k for k in value if not _is_index(k)]


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


def _quote(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def to_fixed(value: float, places: int) -> str:
    """`value.toFixed(places)` (a tie rounds up, on the double's exact value)."""
    exact = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{exact:.{places}f}"


def utf16_length(text: str) -> int:
    """`text.length`: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")


def number(text: str) -> float:
    """`Number(text)` of a string (NaN when it is not a number)."""
    body = trim(text)
    if not body:
        return 0.0
    if _DECIMAL.fullmatch(body):
        return float(body)
    if body in ("Infinity", "+Infinity"):
        return math.inf
    if body == "-Infinity":
        return -math.inf
    radix = _RADIX.fullmatch(body)
    if radix:
        base = {"x": 16, "o": 8, "b": 2}[radix.group(1).lower()]
        try:
            return float(int(radix.group(2), base))
        except ValueError:
            return math.nan
    return math.nan


_ISO = re.compile(
    r"([+-]\d{6}|\d{4})(?:-(\d\d)(?:-(\d\d))?)?"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?([Zz]|[+-]\d\d:?\d\d)?)?"
)


def date_parse(text: str) -> float:
    """`Date.parse(text)` for the ISO 8601 forms JavaScript reads (a date alone is UTC, a
    date and time without a zone is local time; a day past the month's end up to 31 rolls
    over, as in Bun) and RFC 2822 dates; NaN for anything else."""
    found = _ISO.fullmatch(text.strip())
    if not found:
        return _rfc2822(text)
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    fields = [int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)]
    if not (1 <= fields[0] <= 12 and 1 <= fields[1] <= 31 and fields[3] < 60 and fields[4] < 60):
        return math.nan
    if fields[2] > 24 or (fields[2] == 24 and (fields[3] or fields[4] or int(fraction or 0))):
        return math.nan
    try:
        start = datetime(int(year), fields[0], 1)
    except ValueError:
        return math.nan
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
    return float(_ms(moment) + millis)


def _rfc2822(text: str) -> float:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return math.nan
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return float(_ms(moment))


def _ms(moment: datetime) -> int:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (moment - epoch) // timedelta(milliseconds=1)


def mtime_ms(path: str) -> float:
    """`fs.statSync(path).mtimeMs` (0 when it cannot be read, as the CLI's helpers say)."""
    try:
        stat = os.stat(path)
    except OSError:
        return 0
    seconds, nanos = divmod(stat.st_mtime_ns, 1_000_000_000)
    return ms_value(seconds * 1e3 + nanos / 1e6)


def ms_value(value: float) -> int | float:
    """A millisecond count as a JSON number: an integral one as an int."""
    return int(value) if float(value).is_integer() else value
