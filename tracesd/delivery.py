"""Delivery: how a batch of traces reaches the server, however the server can take it.

A trace becomes a BatchItem (openapi.json), encoded once. A batch goes to the batch
endpoint; when the server says it is too large (413) or refuses it as a whole (another
4xx), it is halved until the culprit stands alone; a server without a batch endpoint
(404/405) gets one PUT per trace, a few at a time, from then on. Whatever happens, the
caller gets one result per trace, in order, or an exception that concerns them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from tracesd.answers import ItemResult
from tracesd.backend import BackendClient, Outgoing
from tracesd.errors import (
    BackendAuthError,
    BackendRejected,
    BackendUnavailable,
    BatchUnsupported,
    PayloadTooLarge,
)
from tracesd.models import Trace
from tracesd.outbox import Pending

log = structlog.get_logger("tracesd.delivery")

#: a batch request is cut before its JSON reaches this size
MAX_BATCH_BYTES = 1024 * 1024
#: concurrent PUTs when the server has no batch endpoint
PUT_CONCURRENCY = 8

_FIELDS = (
    ("title", "title"),
    ("preview", "preview"),
    ("timestamp", "timestamp"),
    ("directory", "projectPath"),
    ("shared_visibility", "visibility"),
    ("git_remote_url", "gitRemoteUrl"),
    ("git_branch", "gitBranch"),
    ("git_ref", "gitRef"),
)


def payload(trace: Trace, *, send_titles: bool) -> dict[str, Any]:
    """A BatchItem (openapi.json) for a trace; fields without a value are left out, so the
    server keeps what it has. Without `send_titles`, prompt text stays on this machine."""
    item: dict[str, Any] = {"externalId": trace.id, "agentId": trace.agent_id}
    for column, key in _FIELDS:
        value = getattr(trace, column)
        if value is not None and (send_titles or column not in ("title", "preview")):
            item[key] = value
    return item


def cut(pending: list[Pending], *, send_titles: bool) -> list[tuple[Pending, Outgoing]]:
    """Payloads for the claimed traces, stopping before the request passes MAX_BATCH_BYTES
    (always at least one: a lone oversize trace is the server's to refuse)."""
    batch: list[tuple[Pending, Outgoing]] = []
    size = 0
    for item in pending:
        outgoing = Outgoing.of(payload(item.trace, send_titles=send_titles))
        size += len(outgoing.encoded) + 1
        if batch and size > MAX_BATCH_BYTES:
            break
        batch.append((item, outgoing))
    return batch


class Delivery:
    def __init__(self, client: BackendClient, *, use_batch: bool = True) -> None:
        self._client = client
        self.use_batch = use_batch
        #: requests made, for status
        self.requests = 0

    @property
    def mode(self) -> str:
        return "batch" if self.use_batch else "put"

    async def send(self, items: list[Outgoing]) -> list[ItemResult]:
        """One result per item, in order. Raises BackendAuthError or BackendUnavailable
        when the whole batch must wait (a PUT's own failure is that item's result)."""
        if not self.use_batch:
            return await self._put_each(items)
        self.requests += 1
        try:
            return await self._client.send_batch(items)
        except BatchUnsupported:
            log.warning("sync.batch_unsupported", client=repr(self._client))
            self.use_batch = False
            return await self._put_each(items)
        except (PayloadTooLarge, BackendRejected) as exc:
            if len(items) == 1:
                status = exc.status if isinstance(exc, BackendRejected) else 413
                return [ItemResult(items[0].external_id, status, str(exc))]
            middle = len(items) // 2
            return await self.send(items[:middle]) + await self.send(items[middle:])

    async def _put_each(self, items: list[Outgoing]) -> list[ItemResult]:
        gate = asyncio.Semaphore(PUT_CONCURRENCY)

        async def put(item: Outgoing) -> ItemResult:
            # One trace's transport failure is that trace's "not now": the PUTs that
            # succeeded beside it are still acknowledged.
            external_id = item.external_id
            async with gate:
                self.requests += 1
                try:
                    return await self._client.put(item)
                except PayloadTooLarge as exc:
                    return ItemResult(external_id, 413, str(exc))
                except BackendAuthError as exc:
                    return ItemResult(external_id, 401, str(exc))
                except BackendUnavailable as exc:
                    return ItemResult(external_id, 503, str(exc))

        return list(await asyncio.gather(*(put(i) for i in items)))
