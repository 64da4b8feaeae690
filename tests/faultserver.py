"""A Traces API on 127.0.0.1 that can be told to fail (the real server cannot be).

It stores what it accepts like the reference server, records every request with its time,
and obeys a plan: a 503 outage until a deadline, 429 with Retry-After, 401, a 413 above N
items, per-item statuses, no batch endpoint, a malformed answer, a held or hanging request.

`Plan.hosted` makes it answer as the hosted Traces API does (docs/traces-cli-0.6.31.md (f)):
every answer in the envelope (`{"ok": true, "data": ...}`, errors `{"ok": false, "error":
...}`), a 429 with `error.details.retryAt` (epoch ms, no Retry-After unless told), and no
`/v1/traces/batch` (404): a client must PUT each trace.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    at: float
    method: str
    path: str
    items: int
    status: int
    authorization: str | None


@dataclass(frozen=True, slots=True)
class Received:
    """One item the server stored: its fields, and what the server held for it before."""

    external_id: str
    fields: dict[str, Any]
    before: dict[str, Any]

    @property
    def repeat(self) -> bool:
        """The server already had this id."""
        return bool(self.before)

    @property
    def idempotent(self) -> bool:
        """Storing it changed nothing: a re-send of a version the server already had."""
        return self.repeat and all(self.before.get(k) == v for k, v in self.fields.items())


@dataclass
class Plan:
    #: answer every request with this status until time.monotonic() passes the deadline
    fail_status: int = 503
    fail_until: float = 0.0
    #: how many requests to fail (in addition to the deadline), then succeed
    fail_next: int = 0
    retry_after: str | None = None
    #: the only token accepted; None accepts any request
    token: str | None = None
    #: a batch with more items than this is answered 413
    max_items: int | None = None
    #: per-trace answers inside a batch (and for its PUT)
    item_status: dict[str, int] = field(default_factory=dict)
    #: a whole batch holding one of these ids is answered 400 (a strict server)
    poison_ids: set[str] = field(default_factory=set)
    batch_supported: bool = True
    malformed: bool = False
    #: batch requests wait for this event before they are answered
    hold: asyncio.Event | None = None
    hang: bool = False
    #: a batch the server stored is answered this many seconds later (the answer is on
    #: the wire: a client killed meanwhile never learns that its batch was stored)
    delay_s: float = 0.0
    #: a batch is answered 200 with this raw body (truncated JSON, say)
    answer_body: bytes | None = None
    #: a batch is answered with a redirect (redirect_status) to this URL
    redirect_to: str | None = None
    redirect_status: int = 302
    #: slow-loris: a batch is answered 200, then one byte of body every trickle_s seconds
    trickle_s: float | None = None
    #: a batch is answered 500 with an error body of this many bytes
    error_body_bytes: int = 0
    #: the message of every error answer (a whole request's or one item's), if set
    error_text: str | None = None
    #: a batch is answered 200 with this JSON text as every item's status ("1e400", say)
    status_text: str | None = None
    #: answer as the hosted Traces API: the envelope, no batch endpoint
    hosted: bool = False
    #: the envelope alone (a `tracesd server` of issue 12: it keeps the batch endpoint)
    envelope: bool = False
    #: a refusal (fail_status) carries error.details.retryAt, this many ms from now
    retry_at_in_ms: int | None = None
    #: message batches: False answers 404 to every one (a server without messages)
    messages_supported: bool = True
    #: a message batch holding an entry longer than this (JSON bytes) is answered 413
    max_message_bytes: int | None = None
    #: a message batch holding an entry whose text contains this is answered 422
    poison_text: str | None = None


class FaultServer:
    def __init__(self) -> None:
        self.plan = Plan()
        self.stored: dict[str, dict[str, Any]] = {}
        self.seen: list[Seen] = []
        self.held = 0  # batch requests waiting for plan.hold
        self.streamed = 0  # body bytes of streamed answers (_stream) written
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        #: every item the server stored, in order, with what it held for that id before
        self.received: list[Received] = []
        #: the raw body of every request received, in order (grepped for leaks)
        self.bodies: list[bytes] = []
        #: per trace, the message entries stored, by (message id, part id), last wins
        self.messages: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        #: every message entry received, in order: (trace id, entry)
        self.message_entries: list[tuple[str, dict[str, Any]]] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FaultServer:
        app = web.Application(middlewares=[_keep_body(self.bodies)])
        app.router.add_post("/v1/traces/batch", self._batch)
        app.router.add_put("/v1/traces/{external_id}", self._put)
        app.router.add_post("/v1/traces/{external_id}/messages/batch", self._messages)
        app.router.add_get("/v1/traces", self._list)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()
        if self.plan.hold is not None:
            self.plan.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]

    # ------------------------------------------------------------------- handlers

    def _refusal(self, request: web.Request) -> web.Response | None:
        plan = self.plan
        if (
            plan.token is not None
            and request.headers.get("Authorization") != f"Bearer {plan.token}"
        ):
            return _error(401, "unauthorized")
        if time.monotonic() < plan.fail_until or plan.fail_next > 0:
            plan.fail_next = max(0, plan.fail_next - 1)
            headers = {"Retry-After": plan.retry_after} if plan.retry_after else {}
            details = None
            if plan.retry_at_in_ms is not None:
                details = {"retryAt": int(time.time() * 1000) + plan.retry_at_in_ms}
            return _error(
                plan.fail_status,
                "unavailable",
                headers,
                plan.error_text,
                details=details,
                envelope=plan.hosted or plan.envelope,
            )
        return None

    def _record(self, request: web.Request, items: int, status: int) -> None:
        self.seen.append(
            Seen(
                time.monotonic(),
                request.method,
                request.path,
                items,
                status,
                request.headers.get("Authorization"),
            )
        )

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        if self.plan.hosted:  # the hosted API has no such route
            missing = _error(404, "NOT_FOUND", message="Not found", envelope=True)
            self._record(request, 0, missing.status)
            return missing
        body = await request.json()
        items = body["traces"]
        response = self._refusal(request)
        if response is None and self.plan.hang:
            await self._closing.wait()
        if response is None and (self.plan.trickle_s is not None or self.plan.error_body_bytes):
            return await self._stream(request, len(items))
        if response is None and self.plan.redirect_to is not None:
            response = web.Response(
                status=self.plan.redirect_status, headers={"Location": self.plan.redirect_to}
            )
        if response is None and self.plan.answer_body is not None:
            response = web.Response(
                status=200, body=self.plan.answer_body, content_type="application/json"
            )
        if response is None and not self.plan.batch_supported:
            response = _error(404, "not_found")
        if (
            response is None
            and self.plan.max_items is not None
            and len(items) > self.plan.max_items
        ):
            response = _error(413, "too_large")
        if response is None and any(i["externalId"] in self.plan.poison_ids for i in items):
            response = _error(400, "bad_request")
        if response is None and self.plan.hold is not None:
            self.held += 1
            await self.plan.hold.wait()
        if response is None and self.plan.status_text is not None:
            listed = ",".join(
                f'{{"externalId":{json.dumps(i["externalId"])},"status":{self.plan.status_text}}}'
                for i in items
            )
            response = web.Response(
                status=200, text=f'{{"results":[{listed}]}}', content_type="application/json"
            )
        if response is None and self.plan.malformed:
            response = web.Response(status=200, text="<html>maintenance</html>")
        if response is None:
            results = []
            for item in items:
                status = self.plan.item_status.get(item["externalId"], 200)
                if status == 200:
                    self._store(item["externalId"], item)
                    results.append({"externalId": item["externalId"], "status": 200})
                else:
                    message = self.plan.error_text or f"refused with {status}"
                    error = {"code": "invalid", "message": message}
                    results.append(
                        {"externalId": item["externalId"], "status": status, "error": error}
                    )
            response = web.json_response(
                {"ok": True, "data": {"results": results}}
                if self.plan.envelope
                else {"results": results}
            )
            if self.plan.delay_s:
                await asyncio.sleep(self.plan.delay_s)
        self._record(request, len(items), response.status)
        return response

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """A trace's message batch, stored entry by entry like the reference server (a
        trace it does not have: 404, as the API answers)."""
        external_id = request.match_info["external_id"]
        body = await request.json()
        entries = body["messages"]
        envelope = self.plan.hosted or self.plan.envelope
        response = self._refusal(request)
        if response is None and (
            not self.plan.messages_supported or external_id not in self.stored
        ):
            response = _error(404, "not_found", envelope=envelope)
        limit = self.plan.max_message_bytes
        if (
            response is None
            and limit is not None
            and any(len(json.dumps(e)) > limit for e in entries)
        ):
            response = _error(413, "too_large", envelope=envelope)
        poison = self.plan.poison_text
        if (
            response is None
            and poison is not None
            and any(poison in (e.get("textContent") or "") for e in entries)
        ):
            response = _error(422, "invalid", envelope=envelope)
        if response is None:
            kept = self.messages.setdefault(external_id, {})
            for entry in entries:
                self.message_entries.append((external_id, entry))
                for part in entry["parts"]:
                    kept[(entry["externalId"], part["externalId"])] = entry
            data = {"messages": len(entries)}
            response = web.json_response({"ok": True, "data": data} if envelope else data)
        self._record(request, len(entries), response.status)
        return response

    async def _put(self, request: web.Request) -> web.StreamResponse:
        external_id = request.match_info["external_id"]
        body = await request.json()
        response = self._refusal(request)
        if response is None:
            status = self.plan.item_status.get(external_id, 200)
            if status == 200:
                self._store(external_id, body)
                trace = {"id": f"srv-{external_id}", "externalId": external_id, **body}
                response = web.json_response(
                    {"ok": True, "data": {"trace": trace}}
                    if self.plan.hosted or self.plan.envelope
                    else {"externalId": external_id, **body}
                )
            else:
                response = _error(
                    status, "invalid", envelope=self.plan.hosted or self.plan.envelope
                )
        self._record(request, 1, response.status)
        return response

    async def _list(self, request: web.Request) -> web.StreamResponse:
        response = self._refusal(request)
        if response is None:
            traces = [{"externalId": k, **v} for k, v in self.stored.items()]
            listed = {"traces": traces, "nextCursor": None}
            response = web.json_response(
                {"ok": True, "data": listed} if self.plan.hosted or self.plan.envelope else listed
            )
        self._record(request, 0, response.status)
        return response

    async def stop_listening(self) -> None:
        """Close the listening socket and every connection: clients get "connection
        refused" until listen_again()."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def listen_again(self) -> None:
        """Listen again on the address stop_listening() closed."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        await self.start(host, int(port))

    async def _stream(self, request: web.Request, items: int) -> web.StreamResponse:
        """A streamed misbehaving answer: a slow-loris 200 or a huge 500. `streamed` counts
        the body bytes the client took (writes stop when it goes away)."""
        plan = self.plan
        status = 200 if plan.trickle_s is not None else 500
        self._record(request, items, status)
        response = web.StreamResponse(status=status)
        response.content_type = "application/json"
        if plan.trickle_s is None:
            response.content_length = plan.error_body_bytes
        await response.prepare(request)
        chunk = b" " * (64 * 1024)
        try:
            if plan.trickle_s is not None:
                await response.write(b'{"results":')
                while not self._closing.is_set() and plan.trickle_s is not None:
                    await asyncio.sleep(plan.trickle_s)
                    await response.write(b" ")
                    self.streamed += 1
            else:
                left = plan.error_body_bytes
                while left > 0:
                    await response.write(chunk[:left])
                    self.streamed += min(left, len(chunk))
                    left -= len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client went away, as it should
        return response

    def _store(self, external_id: str, fields: dict[str, Any]) -> None:
        kept = self.stored.setdefault(external_id, {})
        incoming = {k: v for k, v in fields.items() if k != "externalId"}
        self.received.append(Received(external_id, incoming, dict(kept)))
        kept.update(incoming)


def _error(
    status: int,
    code: str,
    headers: dict[str, str] | None = None,
    message: str | None = None,
    *,
    details: dict[str, Any] | None = None,
    envelope: bool = False,
) -> web.Response:
    text = code.replace("_", " ") if message is None else message
    error: dict[str, Any] = {"code": code, "message": text}
    if details is not None:
        error["details"] = details
    body = json.dumps({"ok": False, "error": error} if envelope else {"error": error})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


class ThreadedFaultServer:
    """A FaultServer on its own thread and event loop, for tests that drive a daemon
    subprocess with blocking waits."""

    def __init__(self) -> None:
        import threading

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(FaultServer().start(), self._loop).result(10)

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's loop (to change its plan safely)."""
        done = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return done.result(10)

    def await_(self, fn: Any, *args: Any) -> Any:
        """Await `fn(*args)` on the server's loop (stop_listening, listen_again)."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _keep_body(bodies: list[bytes]) -> Any:
    """A middleware that records each request's raw body before the handler runs."""

    @web.middleware
    async def keep(request: web.Request, handler: Any) -> web.StreamResponse:
        bodies.append(await request.read())
        response: web.StreamResponse = await handler(request)
        return response

    return keep
