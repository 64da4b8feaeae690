"""Handlers of the caller, its namespaces and its traces (INTERFACE section 7, docs (f)).

A caller sees only its own namespace's traces: another namespace's trace answers 404 to
every method, a PUT included, so a client can neither read nor take over a trace that is
not its own, nor learn that it exists. (404 rather than 403 also keeps our own daemon
right: it fails that one trace, where 403 would pause its whole sync.)
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from tracesd.server import protocol
from tracesd.server.auth import USER, User
from tracesd.server.protocol import ApiError, ok
from tracesd.server.schema import SchemaError, document, validate
from tracesd.server.storage import SENT, Detail, Storage

log = structlog.get_logger("tracesd.server")

DB: web.AppKey[Storage] = web.AppKey("db")
#: largest body of a trace route: a batch of 500 items at their schema's maximum lengths fits
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


def routes(app: web.Application) -> None:
    app.router.add_get("/v1/session", get_session)
    app.router.add_get("/v1/namespaces", list_namespaces)
    app.router.add_get("/v1/namespaces/{slug}/traces", list_namespace_traces)
    app.router.add_post("/v1/traces/batch", post_batch)
    app.router.add_put("/v1/traces/{externalId}", put_trace)
    app.router.add_get("/v1/traces/{externalId}", get_trace)
    app.router.add_delete("/v1/traces/{externalId}", delete_trace)
    app.router.add_get("/v1/traces", list_traces)


def trace_detail(stored: Detail, user: User) -> dict[str, Any]:
    """A stored trace as the API's TraceDetail: what was sent, the server's id and counts,
    and who owns it (the caller: nobody sees another's traces)."""
    detail = {name: value for name, value in stored.items() if name != "namespaceId"}
    detail["namespace"] = {"id": user.namespace_id, "slug": user.slug}
    detail["createdBy"] = user.id
    detail["userSlug"] = user.slug
    detail["agentCreator"] = {"id": user.id, "slug": user.slug}
    return detail


# -------------------------------------------------------------------------- the caller


async def get_session(request: web.Request) -> web.Response:
    return ok(request[USER].session())


async def list_namespaces(request: web.Request) -> web.Response:
    return ok({"namespaces": [request[USER].namespace()]})


async def list_namespace_traces(request: web.Request) -> web.Response:
    """The Traces CLI's `share status`: pages of `traces`, `continueCursor`, `isDone`."""
    user = request[USER]
    if request.match_info["slug"] != user.slug:
        raise ApiError(404, "not_found", "no such namespace")
    page = await request.app[DB].list_traces(
        user.namespace_id,
        limit=protocol.limit(request.query.get("limit"), _QUERY["limit"]),
        before=protocol.before(request.query.get("cursor"), _QUERY["cursor"]["maxLength"]),
    )
    done = page.next_before is None
    return ok(
        {
            "traces": [trace_detail(t, user) for t in page.traces],
            "continueCursor": None if done else protocol.cursor(page.next_before or 0),
            "isDone": done,
        }
    )


# ------------------------------------------------------------------------------ traces


async def put_trace(request: web.Request) -> web.Response:
    user = request[USER]
    body = await protocol.read_json(request, MAX_BODY)
    try:
        validate("TraceUpsertRequest", body)
        # BatchItem is TraceUpsertRequest plus externalId: this checks the path's id.
        item = _item({**body, "externalId": request.match_info["externalId"]}, user)
    except SchemaError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    except _Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    (stored,) = await request.app[DB].upsert_many([item], user.namespace_id)
    if stored is None:
        raise _not_found(item["externalId"])
    return ok({"trace": trace_detail(stored, user)})


async def post_batch(request: web.Request) -> web.Response:
    """tracesd's extension: up to MAX_BATCH upserts, one result per item."""
    user = request[USER]
    body = await protocol.read_json(request, MAX_BODY)
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
    # one check of the whole body answers for every item unless some string is broken
    unicode_ok = protocol.unencodable_field(body) is None
    for index, raw in enumerate(body["traces"]):
        external_id = raw.get("externalId")
        external_id = external_id if isinstance(external_id, str) else ""
        try:
            items.append(_item(raw, user, unicode_checked=unicode_ok))
        except SchemaError as exc:
            error = {"code": "invalid", "message": f"traces.{index}: {exc}"}
            results.append({"externalId": external_id, "status": 422, "error": error})
        except _Forbidden as exc:
            error = {"code": "forbidden", "message": f"traces.{index}: {exc}"}
            results.append({"externalId": external_id, "status": 403, "error": error})
        else:
            results.append({"externalId": external_id, "status": 200})
    stored = await request.app[DB].upsert_many(items, user.namespace_id) if items else []
    owned = iter(stored)
    for result in results:
        if result["status"] == 200 and next(owned) is None:
            result["status"] = 404
            result["error"] = {
                "code": "not_found",
                "message": str(_not_found(result["externalId"])),
            }
    log.debug("server.batch_stored", stored=len(items), rejected=len(results) - len(items))
    return ok({"results": results})


async def get_trace(request: web.Request) -> web.Response:
    """GET and HEAD (aiohttp answers HEAD with this status and no body)."""
    user = request[USER]
    external_id = request.match_info["externalId"]
    stored = await request.app[DB].get(external_id, user.namespace_id)
    if stored is None:
        raise _not_found(external_id)
    return ok({"trace": trace_detail(stored, user)})


async def delete_trace(request: web.Request) -> web.Response:
    user = request[USER]
    external_id = request.match_info["externalId"]
    if not await request.app[DB].delete(external_id, user.namespace_id):
        raise _not_found(external_id)
    log.info("server.trace_deleted")
    return ok({"deleted": True})


async def list_traces(request: web.Request) -> web.Response:
    user = request[USER]
    query = request.query
    filters: dict[str, str] = {}
    for name, keyword in _FILTERS:
        value = query.get(name, "")
        if len(value) > _QUERY[name]["maxLength"]:
            raise ApiError(400, "bad_query", f"{name} is longer than {_QUERY[name]['maxLength']}")
        if value:
            filters[keyword] = value
    page = await request.app[DB].list_traces(
        user.namespace_id,
        **filters,
        limit=protocol.limit(query.get("limit"), _QUERY["limit"]),
        before=protocol.before(query.get("cursor"), _QUERY["cursor"]["maxLength"]),
    )
    cursor = protocol.cursor(page.next_before) if page.next_before is not None else None
    return ok({"traces": [trace_detail(t, user) for t in page.traces], "nextCursor": cursor})


# ----------------------------------------------------------------------- parsing


class _Forbidden(Exception):
    """The request names a namespace that is not the caller's."""


def _item(value: Any, user: User, *, unicode_checked: bool = False) -> dict[str, Any]:
    """A validated BatchItem with only the fields the server stores; SchemaError names
    the offending field, _Forbidden a targetNamespaceId that is not the caller's.
    `unicode_checked`: the caller found no lone surrogate anywhere in `value`."""
    validate("BatchItem", value)
    target = value.get("targetNamespaceId")
    if target is not None and target != user.namespace_id:
        raise _Forbidden("targetNamespaceId is not a namespace of this caller")
    where = None if unicode_checked else protocol.unencodable_field(value)
    if where is not None:
        raise SchemaError(where, f"{where} must be valid Unicode (it has a lone surrogate)")
    item: dict[str, Any] = {name: field for name, field in value.items() if name in SENT}
    if isinstance(item.get("timestamp"), float):  # JSON Schema: 1.0 is an integer
        item["timestamp"] = int(item["timestamp"])
    return item


def _not_found(external_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no trace {external_id!r}")
