"""The values a config key may take: types, finite numbers in a declared range, the API URL.

Each validator takes the raw value (from TOML or a flag) and returns it typed, or raises
Invalid with a message that never echoes a secret (config.py adds the key and the file).

Numbers are finite (TOML's nan and inf are not numbers here), inside the range their key
declares, and never a bool (TOML's `true` is not 1). The API URL is an http(s) base URL
with a host: no credentials (user:password@host would travel in an Authorization header of
its own and show in logs and status: the key belongs in TRACES_API_KEY or api_key_file), no
query string or fragment (the client appends /v1/traces to it), no whitespace or control
characters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class Invalid(Exception):
    """A value failed validation; the caller adds key and file."""


@dataclass(frozen=True, slots=True)
class Number:
    """A finite number in [minimum, maximum]; an integer when `integer`."""

    minimum: float
    maximum: float
    integer: bool = False

    def __call__(self, value: Any, _: object = None) -> float | int:
        kind = "an integer" if self.integer else "a number"
        allowed = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise Invalid(f"must be {kind}, got {type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"must be a finite number {self.range}, got {value}")
        if not self.minimum <= value <= self.maximum:
            shown = value if abs(value) < 1e15 else "a larger one"
            raise Invalid(f"must be {self.range}, got {shown}")
        return value if self.integer else float(value)

    @property
    def range(self) -> str:
        return f"between {_plain(self.minimum)} and {_plain(self.maximum)}"


def string(value: Any, _: object = None) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {type_name(value)}")
    return value


def boolean(value: Any, _: object = None) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {type_name(value)}")
    return value


def choice(choices: tuple[str, ...]) -> Callable[[Any, object], str]:
    def check(value: Any, _: object = None) -> str:
        text = string(value).lower()
        if text not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}; got {value!r}")
        return text

    return check


def api_url(value: Any, _: object = None) -> str:
    """The Traces API base URL ("" turns sync off). Messages never repeat the value: it may
    hold a key."""
    text = string(value).strip().rstrip("/")
    if not text:
        return ""
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise Invalid("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise Invalid("is not a valid URL (check the host and the port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise Invalid(
            "must not hold credentials (user:password@host): put the API key in "
            "TRACES_API_KEY or [sync] api_key_file"
        )
    if not parts.hostname or port == 0:
        raise Invalid("must name a host (and a port from 1 to 65535, if any)")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise Invalid("must be the base URL only, without a query string or fragment")
    return text


def type_name(value: Any) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _plain(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
