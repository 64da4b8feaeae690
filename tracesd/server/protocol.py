"""The API's wire conventions, shared by every handler: the envelope, errors, bodies,
query parameters and cursors.

Success: `{"ok": true, "data": {...}}` (every 2xx has a JSON body; aiohttp drops it for
HEAD). Error: `{"ok": false, "error": {"code", "message", "details"?}}`; an answer that
asks the client to come back later (429, a busy 503) carries both `Retry-After` (seconds)
and `error.details.retryAt` (epoch ms), since the Traces CLI reads only the latter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import hdrs, web

from tracesd.models import now_ms
from tracesd.server import body
from tracesd.utf8 import encodable

log = structlog.get_logger("tracesd.server")

#: how long a request's body may take to arrive, once its headers have
BODY_TIMEOUT_S = 30.0
BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
_CURSOR = re.compile(r"seq:([1-9][0-9]{0,17})")  # fits SQLite's 64-bit integers


class ApiError(Exception):
    """An answer other than 2xx, raised anywhere below a handler; rendered by `error`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.headers = dict(headers or {})
        self.details = dict(details or {})
        super().__init__(message)


def ok(data: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"ok": True, "data": data}, status=status)


def error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> web.Response:
    """The error envelope; a `Retry-After` header is also given as `details.retryAt`."""
    detail: dict[str, Any] = {"code": code, "message": message}
    extra = dict(details or {})
    retry = (headers or {}).get(hdrs.RETRY_AFTER)
    if retry is not None and retry.isdigit():
        extra["retryAt"] = now_ms() + int(retry) * 1000
    if extra:
        detail["details"] = extra
    return web.json_response({"ok": False, "error": detail}, status=status, headers=headers)


async def read_json(request: web.Request, limit: int) -> Any:
    """The request body as JSON (`body.parse`), at most `limit` bytes.

    400 when it is not JSON or its bytes are broken (framing, encoding), 413 when it is
    too large, 408 (closing the connection) when it does not arrive in time.
    """
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    timeout = request.app[BODY_TIMEOUT]
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(1 << 20):
                data += chunk
                if len(data) > limit:
                    raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    except TimeoutError:
        log.info("server.body_timeout", method=request.method, path=request.path)
        raise ApiError(408, "timeout", f"the body did not arrive within {timeout:g}s") from None
    except (web.RequestPayloadError, ConnectionError) as exc:
        # a broken chunk, a bad Content-Encoding, a client gone: its text may quote the body
        raise ApiError(
            400, "bad_body", f"the body could not be read ({type(exc).__name__})"
        ) from None
    try:
        return body.parse(bytes(data))
    except body.BodyError as exc:
        raise ApiError(400, "bad_json", str(exc)) from None


def limit(text: str | None, schema: Mapping[str, Any]) -> int:
    """A `limit` query parameter within its schema's bounds, else 400."""
    if text is None:
        return int(schema["default"])
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_query", f"limit must be an integer, got {text!r}") from None
    if not schema["minimum"] <= value <= schema["maximum"]:
        raise ApiError(
            400,
            "bad_query",
            f"limit must be between {schema['minimum']} and {schema['maximum']}, got {value}",
        )
    return value


def cursor(before: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{before}".encode()).decode().rstrip("=")


def before(text: str | None, max_length: int) -> int | None:
    """The sequence a cursor stands for; 400 for anything `cursor` did not make."""
    if text is None:
        return None
    match = None
    if len(text) <= max_length:
        try:
            decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            decoded = ""
        match = _CURSOR.fullmatch(decoded)
    if match is None:
        raise ApiError(400, "bad_cursor", "cursor is not one this server handed out")
    return int(match.group(1))


def unencodable_field(value: Any) -> str | None:
    """Where `value` holds a string that cannot be UTF-8 (a lone surrogate JSON may
    escape), as a dotted path; None when it has none. No recursion.

    One encoding of the whole value answers the common case (valid) in C; only a value
    that fails it is walked to name the place."""
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if not encodable(node):
                return path.lstrip(".") or "body"
        elif isinstance(node, dict):
            for key, child in node.items():
                if not encodable(key):
                    return path.lstrip(".") or "body"
                stack.append((f"{path}.{key}", child))
        elif isinstance(node, list):
            stack.extend((f"{path}.{index}", child) for index, child in enumerate(node))
    return None
