"""The one parser of request bodies: bytes in, a JSON value or `BodyError` out.

Strict where Python's `json` is lenient, so that nothing it lets through can fail later
as a 500: UTF-8 only (no UTF-16/32 guessing, no BOM); no `NaN`/`Infinity` literals; every
number finite and within a signed 64-bit integer; no duplicate key in an object (which
value wins differs between parsers); nesting at most `MAX_DEPTH` deep (a message batch
is 6 deep before a tool call's own arguments; deeper input would otherwise end in a
RecursionError, here or in the validator). Every failure is a `BodyError` whose message
names the problem but quotes no input.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: deepest nesting of arrays and objects accepted (room for a tool call's arguments)
MAX_DEPTH = 64
_INT_LIMIT = 2**63


class BodyError(ValueError):
    """The body is not a JSON value this server accepts; the message quotes no input."""


def parse(data: bytes) -> Any:
    """The JSON value `data` holds, or BodyError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 (bad byte at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        raise BodyError("the body starts with a byte order mark")
    try:
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except BodyError:
        raise
    except RecursionError:  # deeper than the interpreter's limit: the C parser gives up
        raise BodyError(f"the body nests deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # json.JSONDecodeError: its message names a position only
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not a number"
        where = f" at offset {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise BodyError(f"the body is not JSON: {reason}{where}") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    """BodyError if arrays and objects in `value` nest deeper than MAX_DEPTH (no recursion)."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for node in level
            if isinstance(node, (dict, list))
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return
    if any(isinstance(node, (dict, list)) for node in level):
        raise BodyError(f"the body nests deeper than {MAX_DEPTH}")


def _no_constant(name: str) -> Any:
    raise BodyError(f"the body is not JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError("the body has a number out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20:  # more digits than any 64-bit integer, and never a slow int()
        raise BodyError("the body has a number out of range")
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise BodyError("the body has a number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise BodyError("the body has an object with a duplicate key")
    return value
