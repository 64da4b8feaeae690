"""The Traces API as an aiohttp application (INTERFACE section 7, openapi.json).

Every request body is validated against the API document (`schema.validate`); a batch
validates each item on its own, so one bad item gets its own 422 result while the others
are stored. Every error answer, aiohttp's own 404/405/413 included, has the body
`{"error": {"code", "message"}}`: the `_errors` middleware is the one place that turns
exceptions into answers.

Auth: `Authorization: Bearer <token>`, compared with every configured token in constant
time. Neither the tokens nor the header are ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from tracesd.errors import StoreError
from tracesd.server import body
from tracesd.server.db import TraceDB
from tracesd.server.edge import track_requests
from tracesd.server.schema import SchemaError, document, validate
from tracesd.server.secrecy import failure

log = structlog.get_logger("tracesd.server")

#: largest request body: a batch of 500 items at their schema's maximum lengths fits
MAX_BODY = 8 * 1024 * 1024
MAX_BATCH: int = document()["components"]["schemas"]["BatchRequest"]["properties"]["traces"][
    "maxItems"
]
#: the query parameters of GET /v1/traces, as the API document declares them
_QUERY: dict[str, dict[str, Any]] = {
    p["name"]: p["schema"] for p in document()["paths"]["/v1/traces"]["get"]["parameters"]
}
_FILTERS = (
    ("gitRemoteUrl", "git_remote_url"),
    ("gitBranch", "git_branch"),
    ("agentId", "agent_id"),
)
_CURSOR = re.compile(r"seq:([1-9][0-9]{0,17})")  # fits SQLite's 64-bit integers

#: how long a request's body may take to arrive, once its headers have
BODY_TIMEOUT_S = 30.0

DB = web.AppKey("db", TraceDB)
BODY_TIMEOUT = web.AppKey("body_timeout_s", float)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    422: "invalid",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An answer other than 2xx, raised anywhere below a handler; `_errors` renders it."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.headers = dict(headers or {})
        super().__init__(message)


def make_app(
    db: TraceDB, *, tokens: Sequence[str] | None, body_timeout_s: float = BODY_TIMEOUT_S
) -> web.Application:
    """The API on `db`. `tokens=None` turns auth off; an empty sequence is refused."""
    middlewares: list[Middleware] = [track_requests, _errors]
    if tokens is not None:
        if not tokens:
            raise ValueError("auth needs at least one token (tokens=None turns auth off)")
        middlewares.append(_bearer_auth(tokens))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[DB] = db
    app[BODY_TIMEOUT] = body_timeout_s
    app.router.add_put("/v1/traces/{externalId}", put_trace)
    app.router.add_get("/v1/traces/{externalId}", get_trace)
    app.router.add_post("/v1/traces/batch", post_batch)
    app.router.add_get("/v1/traces", list_traces)
    return app


# -------------------------------------------------------------------------- handlers


async def put_trace(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        validate("TraceUpsertRequest", body)
        # BatchItem is TraceUpsertRequest plus externalId: this checks the path's id.
        item = _item({**body, "externalId": request.match_info["externalId"]})
    except SchemaError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    (detail,) = await request.app[DB].upsert_many([item])
    return web.json_response(detail)


async def post_batch(request: web.Request) -> web.Response:
    body = await _json(request)
    traces = body.get("traces") if isinstance(body, dict) else None
    if isinstance(traces, list) and len(traces) > MAX_BATCH:
        raise ApiError(
            413, "too_many_items", f"a batch holds at most {MAX_BATCH} traces, got {len(traces)}"
        )
    try:
        validate("BatchRequest", body)
    except SchemaError as exc:
        raise ApiError(400, "not_a_batch", str(exc)) from None

    results: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for index, raw in enumerate(body["traces"]):
        external_id = raw.get("externalId")
        try:
            items.append(_item(raw))
        except SchemaError as exc:
            error = {"code": "invalid", "message": f"traces.{index}: {exc}"}
            external_id = external_id if isinstance(external_id, str) else ""
            results.append({"externalId": external_id, "status": 422, "error": error})
        else:
            results.append({"externalId": external_id, "status": 200})
    if items:
        await request.app[DB].upsert_many(items)
    log.debug("server.batch_stored", stored=len(items), rejected=len(results) - len(items))
    return web.json_response({"results": results})


async def get_trace(request: web.Request) -> web.Response:
    external_id = request.match_info["externalId"]
    detail = await request.app[DB].get(external_id)
    if detail is None:
        raise ApiError(404, "not_found", f"no trace {external_id!r}")
    return web.json_response(detail)


async def list_traces(request: web.Request) -> web.Response:
    query = request.query
    filters: dict[str, str] = {}
    for name, keyword in _FILTERS:
        value = query.get(name, "")
        if len(value) > _QUERY[name]["maxLength"]:
            raise ApiError(400, "bad_query", f"{name} is longer than {_QUERY[name]['maxLength']}")
        if value:
            filters[keyword] = value
    page = await request.app[DB].list_traces(
        **filters, limit=_limit(query.get("limit")), before=_before(query.get("cursor"))
    )
    cursor = _cursor(page.next_before) if page.next_before is not None else None
    return web.json_response({"traces": page.traces, "nextCursor": cursor})


# ----------------------------------------------------------------------- parsing


async def _json(request: web.Request) -> Any:
    """The request body as JSON (`body.parse`).

    400 when it is not JSON or its bytes are broken (framing, encoding), 413 when it is
    too large, 408 (closing the connection) when it does not arrive in time.
    """
    timeout = request.app[BODY_TIMEOUT]
    try:
        async with asyncio.timeout(timeout):
            data = await request.read()
    except TimeoutError:
        log.info("server.body_timeout", method=request.method, path=request.path)
        raise ApiError(408, "timeout", f"the body did not arrive within {timeout:g}s") from None
    except (web.RequestPayloadError, ConnectionError) as exc:
        # a broken chunk, a bad Content-Encoding, a client gone: its text may quote the body
        raise ApiError(
            400, "bad_body", f"the body could not be read ({type(exc).__name__})"
        ) from None
    try:
        return body.parse(data)
    except body.BodyError as exc:
        raise ApiError(400, "bad_json", str(exc)) from None


def _item(value: Any) -> dict[str, Any]:
    """A validated BatchItem, ready to store; SchemaError names the offending field."""
    validate("BatchItem", value)
    item: dict[str, Any] = value
    for name, field in item.items():
        if isinstance(field, str) and not _encodable(field):
            raise SchemaError(name, f"{name} must be valid Unicode (it has a lone surrogate)")
    if isinstance(item.get("timestamp"), float):  # JSON Schema: 1.0 is an integer
        item["timestamp"] = int(item["timestamp"])
    return item


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _limit(text: str | None) -> int:
    schema = _QUERY["limit"]
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


def _cursor(before: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{before}".encode()).decode().rstrip("=")


def _before(cursor: str | None) -> int | None:
    """The sequence a cursor stands for; 400 for anything `_cursor` did not make."""
    if cursor is None:
        return None
    match = None
    if len(cursor) <= _QUERY["cursor"]["maxLength"]:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            text = ""
        match = _CURSOR.fullmatch(text)
    if match is None:
        raise ApiError(400, "bad_cursor", "cursor is not one this server handed out")
    return int(match.group(1))


# ----------------------------------------------------------------------- middleware


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {"code", "message"}}` with its status."""
    try:
        return await handler(request)
    except ApiError as exc:
        answer = _error(exc.status, exc.code, str(exc), exc.headers)
        if exc.status == 408:  # the rest of the body may still come: never read it
            answer.force_close()
        return answer
    except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too large
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in (hdrs.ALLOW,)}
        return _error(exc.status, _CODES.get(exc.status, "error"), _message(request, exc), headers)
    except StoreError as exc:
        if exc.busy:
            log.warning("server.store_busy", method=request.method, path=request.path)
            return _error(503, "unavailable", "the database is busy", {hdrs.RETRY_AFTER: "1"})
        log.error("server.store_failed", method=request.method, path=request.path, error=str(exc))
        return _error(500, "internal", "the database failed")
    except Exception as exc:  # a bug: answered like any error, logged with its frames
        # (its type and where, not its message: that may quote the request's headers)
        log.error("server.internal_error", method=request.method, path=request.path, **failure(exc))
        return _error(500, "internal", "internal server error")


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such resource: {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"the body is larger than {MAX_BODY} bytes"
    return exc.reason


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _bearer_auth(tokens: Sequence[str]) -> Middleware:
    secrets = [token.encode("utf-8", "surrogatepass") for token in tokens]

    @web.middleware
    async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not _known(given.strip(), secrets):
            log.info(
                "server.unauthorized",
                method=request.method,
                path=request.path,
                remote=request.remote,
                reason="unknown token" if scheme.lower() == "bearer" else "no bearer token",
            )
            raise ApiError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                {hdrs.WWW_AUTHENTICATE: "Bearer"},
            )
        return await handler(request)

    return bearer_auth


def _known(given: str, secrets: Sequence[bytes]) -> bool:
    """Whether `given` is one of `secrets`; every one is compared, in constant time each."""
    candidate = given.encode("utf-8", "surrogatepass")
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate, secret)
    return found and bool(candidate)
