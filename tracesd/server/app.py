"""The Traces API as an aiohttp application (INTERFACE section 7 as corrected by
docs/traces-cli-0.6.31.md (f), openapi.json): what the real Traces CLI 0.6.31 uses, plus
tracesd's `POST /v1/traces/batch`.

Handlers: `traces` (the caller, namespaces, traces), `message_routes` (messages). Every
request body is validated against the API document (`schema.validate`). Every answer is
an envelope (`protocol`): `{"ok": true, "data"}` or `{"ok": false, "error": {"code",
"message"}}`, aiohttp's own 404/405/413 included: the `_errors` middleware is the one
place that turns exceptions into answers.

Auth (`auth`): `Authorization: Bearer <token>`; each configured token is its own user and
namespace. Neither the tokens nor the header are ever logged.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from tracesd.errors import StoreError
from tracesd.server import auth, message_routes, traces
from tracesd.server.edge import track_requests
from tracesd.server.protocol import BODY_TIMEOUT, BODY_TIMEOUT_S, ApiError, error
from tracesd.server.secrecy import failure
from tracesd.server.storage import Storage
from tracesd.server.traces import DB, MAX_BATCH, MAX_BODY

__all__ = ["BODY_TIMEOUT_S", "DB", "MAX_BATCH", "MAX_BODY", "MAX_MESSAGE_BODY", "make_app"]

log = structlog.get_logger("tracesd.server")

MAX_MESSAGE_BODY = message_routes.MAX_BODY

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


def make_app(
    db: Storage, *, tokens: Sequence[str] | None, body_timeout_s: float = BODY_TIMEOUT_S
) -> web.Application:
    """The API on `db`. `tokens=None` turns auth off; an empty sequence is refused."""
    if tokens is not None and not tokens:
        raise ValueError("auth needs at least one token (tokens=None turns auth off)")
    app = web.Application(
        middlewares=[track_requests, _errors, auth.middleware(tokens)],
        client_max_size=MAX_MESSAGE_BODY,
    )
    app[DB] = db
    app[BODY_TIMEOUT] = body_timeout_s
    traces.routes(app)
    message_routes.routes(app)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the error envelope with its status."""
    try:
        return await handler(request)
    except ApiError as exc:
        answer = error(exc.status, exc.code, str(exc), exc.headers, exc.details)
        if exc.status == 408:  # the rest of the body may still come: never read it
            answer.force_close()
        return answer
    except auth.Unauthorized:
        message = "a valid bearer token is required"
        return error(401, "unauthorized", message, {hdrs.WWW_AUTHENTICATE: "Bearer"})
    except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too large
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in (hdrs.ALLOW,)}
        return error(exc.status, _CODES.get(exc.status, "error"), _message(request, exc), headers)
    except StoreError as exc:
        if exc.busy:
            log.warning(
                "server.store_busy", method=request.method, path=request.path, error=str(exc)
            )
            return error(503, "unavailable", "the database is busy", {hdrs.RETRY_AFTER: "1"})
        log.error("server.store_failed", method=request.method, path=request.path, error=str(exc))
        return error(500, "internal", "the database failed")
    except Exception as exc:  # a bug: answered like any error, logged with its frames
        # (its type and where, not its message: that may quote the request's headers)
        log.error("server.internal_error", method=request.method, path=request.path, **failure(exc))
        return error(500, "internal", "internal server error")


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such resource: {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"the body is larger than {MAX_MESSAGE_BODY} bytes"
    return exc.reason
