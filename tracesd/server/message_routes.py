"""Handlers of a trace's messages: the Traces CLI's batch upload, `--follow`'s single
message PUT, and `traces sync`'s read (`message_rules` holds the merge rule).

Bounds: at most MAX_MESSAGES entries per batch (the CLI sends at most 1000), and a body
of at most MAX_BODY bytes. The CLI cuts its batches at an *estimated* 8 MiB that counts
UTF-16 units and leaves escaping out, so a real body can be a few times larger (text
outside ASCII is 2-3 bytes a unit); 32 MiB leaves room for that.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from tracesd.server import protocol
from tracesd.server.auth import USER
from tracesd.server.protocol import ApiError, ok
from tracesd.server.schema import SchemaError, document, validate
from tracesd.server.traces import DB

log = structlog.get_logger("tracesd.server")

MAX_BODY = 32 * 1024 * 1024
MAX_MESSAGES: int = document()["components"]["schemas"]["MessageBatchRequest"]["properties"][
    "messages"
]["maxItems"]


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/traces/{externalId}/messages/batch", post_messages)
    app.router.add_put("/v1/traces/{externalId}/messages/{messageId}", put_message)
    app.router.add_get("/v1/traces/{externalId}/messages", get_messages)


async def post_messages(request: web.Request) -> web.Response:
    """`{"idScheme", "messages": [Message]}` -> `{"messages": N}` (distinct messages)."""
    user = request[USER]
    external_id = request.match_info["externalId"]
    body = await protocol.read_json(request, MAX_BODY)
    entries = body.get("messages") if isinstance(body, dict) else None
    if isinstance(entries, list) and len(entries) > MAX_MESSAGES:
        raise ApiError(
            413,
            "too_many_items",
            f"a batch holds at most {MAX_MESSAGES} messages, got {len(entries)}",
        )
    _valid("MessageBatchRequest", body)
    count = await request.app[DB].upsert_messages(external_id, user.namespace_id, entries or [])
    if count is None:
        raise _not_found(external_id)
    log.debug("server.messages_stored", messages=count, entries=len(entries or []))
    return ok({"messages": count})


async def put_message(request: web.Request) -> web.Response:
    """One message, its externalId in the path (`--follow`) -> `{"message": Message}`."""
    user = request[USER]
    external_id = request.match_info["externalId"]
    message_id = request.match_info["messageId"]
    body = await protocol.read_json(request, MAX_BODY)
    _valid("MessageUpsertRequest", body)
    try:
        validate("ExternalId", message_id)
    except SchemaError as exc:
        raise ApiError(422, "invalid", f"messageId: {exc}") from None
    entry = {**body, "externalId": message_id}
    stored = await request.app[DB].put_message(external_id, user.namespace_id, entry)
    if stored is None:
        raise _not_found(external_id)
    return ok({"message": stored})


async def get_messages(request: web.Request) -> web.Response:
    """`?includeParts=true`: each message with its parts; in order either way."""
    user = request[USER]
    external_id = request.match_info["externalId"]
    parts = request.query.get("includeParts", "").lower() in ("true", "1")
    found = await request.app[DB].read_messages(external_id, user.namespace_id, parts=parts)
    if found is None:
        raise _not_found(external_id)
    return ok({"messages": found})


def _valid(schema: str, body: Any) -> None:
    """422 naming the field unless `body` matches `schema` and is all valid Unicode."""
    try:
        validate(schema, body)
    except SchemaError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    where = protocol.unencodable_field(body)
    if where is not None:
        message = f"{where} must be valid Unicode (it has a lone surrogate)"
        raise ApiError(422, "invalid", message)


def _not_found(external_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no trace {external_id!r}")
