"""What the Traces API answered, read defensively: the one parser of server answers.

Everything in an answer is foreign: a header may hold any text, a body any bytes, a JSON
number may be 1e400, NaN or a bool. Every value the client reads from an answer goes
through a function here, which returns a typed value or raises MalformedAnswer (wire.py
makes it "not now": sync backs off and retries), and never anything else:

* Retry-After: delta-seconds (ASCII digits; a decimal fraction is tolerated) or an HTTP
  date. Anything else (other scripts' digits, a negative number, a date out of range, a
  zone beyond 24 hours) is no hint: None. A hint is finite, in [0, RETRY_AFTER_MAX_S].
* the envelope: a success is `{"ok": true, "data": {...}}` (`ok` is not checked on a 2xx, as
  the real CLI does not), an error `{"ok": false, "error": {"code", "message", "details"?}}`.
  A tracesd server from before the envelope answered the bare shape (`{"results": ...}`):
  a document without "data" is read as its own data, so mixed versions keep working.
* a batch answer: data whose "results" hold exactly one object per trace sent, in
  the order sent, each with the trace's "externalId" (a string) and an integer "status" in
  [100, 599] (not a bool, not a float); "error", when it is an object, may hold a string
  "message". Another shape, a missing key, an id we did not send, a duplicate, a wrong
  count, NaN/Infinity or a nesting too deep to decode: MalformedAnswer.
* a 429's `error.details.retryAt` (epoch ms, the hosted API's hint; the real CLI reads it
  and never Retry-After): an integer or finite number, as seconds from now in
  [0, RETRY_AFTER_MAX_S]; anything else is no hint.
* text shown to the user (an error message, a server's error body): control and format
  characters replaced, at most MAX_TEXT characters.

Content-Type and Content-Length decide nothing: aiohttp frames the body (a lying
Content-Length is a transport error), the client reads at most MAX_BODY bytes whatever they
say, and JSON is recognised by decoding it.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tracesd import terminal
from tracesd.errors import MalformedAnswer
from tracesd.sync.backoff import RETRY_AFTER_MAX_S

#: the longest server text kept (an error message, the start of an error body)
MAX_TEXT = 300

_SECONDS = re.compile(r"([0-9]+)(?:\.[0-9]*)?")
_DAY = 86400


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One trace's entry in a batch answer, as the server wrote it (wire.py says what its
    status means)."""

    external_id: str
    status: int
    message: str = ""


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds from now, or None when it says nothing we can use."""
    if not value:
        return None
    value = value.strip()
    seconds = _SECONDS.fullmatch(value)
    if seconds is not None:
        whole = seconds.group(1).lstrip("0")
        if len(whole) > 9:  # beyond any clamp; int() of thousands of digits is refused
            return RETRY_AFTER_MAX_S
        return min(float(value), RETRY_AFTER_MAX_S)
    when = _http_date(value)
    if when is None:
        return None
    left = when - (time.time() if now is None else now)
    return min(max(0.0, left), RETRY_AFTER_MAX_S)


def _http_date(value: str) -> float | None:
    """An HTTP date (RFC 9110, and the obsolete forms email.utils reads) as epoch seconds."""
    if len(value) > 100:
        return None
    try:
        parts = email.utils.parsedate_tz(value)
    except Exception:  # a foreign string: whatever the parser trips on, it is no date
        return None
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    offset = parts[9] or 0
    if not (1 <= year <= 9999 and abs(offset) < _DAY):
        return None
    try:
        zone = timezone(timedelta(seconds=offset))
        return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone).timestamp()
    except (ValueError, OverflowError):
        return None


def batch_results(sent: list[str], body: bytes) -> list[ItemResult]:
    """One result per trace sent (their external ids, in order), or MalformedAnswer."""
    data = _data(_decode(body))
    results = data.get("results") if data is not None else None
    if not isinstance(results, list):
        raise MalformedAnswer("malformed answer to the batch request: no list of results")
    if len(results) != len(sent):
        raise MalformedAnswer(
            f"the batch answer holds {len(results)} results for {len(sent)} traces sent"
        )
    parsed = [_item(result, expected) for result, expected in zip(results, sent, strict=True)]
    return parsed


def _data(document: Any) -> dict[str, Any] | None:
    """The answer's data: `data` of the envelope, else the bare (legacy) document itself;
    None when it is not an object."""
    if isinstance(document, dict) and "data" in document:
        document = document["data"]
    return document if isinstance(document, dict) else None


def retry_at(body: bytes, *, now: float | None = None) -> float | None:
    """`error.details.retryAt` (epoch ms) of an error answer as seconds from now, or None
    when the body holds no usable one."""
    try:
        document = _decode(body)
    except MalformedAnswer:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    value = details.get("retryAt") if isinstance(details, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if abs(value) > 1e15:  # year ~33,700: no moment, and int -> float would overflow
        return None
    left = value / 1000 - (time.time() if now is None else now)
    return min(max(0.0, left), RETRY_AFTER_MAX_S)


def _item(result: Any, expected: str) -> ItemResult:
    if not isinstance(result, dict):
        raise MalformedAnswer("malformed answer to the batch request: a result is not an object")
    external_id = result.get("externalId")
    if external_id != expected or not isinstance(external_id, str):
        raise MalformedAnswer("the batch answer does not match the traces sent")
    status = result.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedAnswer(
            f"malformed answer to the batch request: status {_shown(status)} for a trace"
        )
    error = result.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return ItemResult(external_id, status, printable(message) if isinstance(message, str) else "")


def error_message(body: bytes, status: int) -> str:
    """The server's error text for a failed request, fit to show: `code: message` of an
    ErrorResponse (with its `details`, as the real CLI shows them), else the start of the
    body, else `HTTP <status>`."""
    try:
        document = _decode(body)
    except MalformedAnswer:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        details = f" \u2014 {_shown(error['details'], MAX_TEXT)}" if "details" in error else ""
        if isinstance(code, str) and isinstance(message, str):
            return printable(f"{code}: {message}{details}")
        if isinstance(message, str):
            return printable(message + details)
    text = printable(body[: MAX_TEXT * 4].decode("utf-8", "replace")).strip()
    return text or f"HTTP {status}"


#: private-use and unassigned characters: no meaning to show (controls, format characters and
#: separators are escaped visibly by `terminal.escape`, the one rule for text bound for a screen)
_UNSHOWN = frozenset({"Co", "Cn"})


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """`text` fit for a log line or a terminal: control, format, private and unassigned
    characters (escape sequences, bidi overrides, NULs) replaced; at most `limit` chars."""
    text = text[: limit * 2]
    kept = terminal.escape(
        "".join(
            " " if ch in "\t\n\r" else ("\ufffd" if unicodedata.category(ch) in _UNSHOWN else ch)
            for ch in text
        )
    )
    return kept if len(kept) <= limit else kept[: limit - 1] + "\u2026"


def _decode(body: bytes) -> Any:
    """JSON without NaN or Infinity; undecodable (or nested too deep) is MalformedAnswer."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise MalformedAnswer("malformed answer: not JSON") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _shown(value: Any, limit: int = 40) -> str:
    """A JSON value in a message, short and printable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return printable(text, limit)
