"""Delivery: how a batch of traces reaches the server, however the server can take it.

A batch goes to the batch endpoint. When the server finds the request too large (413) or
refuses it as a whole (another 4xx), it is halved until the culprit stands alone, refused
for good; a server without a batch endpoint (404/405) gets one PUT per trace, a few at a
time, from then on. Whatever happens, the caller gets one outcome per trace, in order, or
one outcome that concerns them all (NotNow, KeyRefused: the server takes none now).
"""

from __future__ import annotations

import asyncio

import structlog

from tracesd.sync.client import BackendClient
from tracesd.sync.wire import (
    KeyRefused,
    NoBatchEndpoint,
    NotNow,
    Outcome,
    Outgoing,
    Refused,
    TooLarge,
)

log = structlog.get_logger("tracesd.delivery")

#: concurrent PUTs when the server has no batch endpoint
PUT_CONCURRENCY = 8

#: one outcome per trace sent, in order, or one for them all
Delivered = list[Outcome] | NotNow | KeyRefused


class Delivery:
    def __init__(self, client: BackendClient, *, use_batch: bool = True) -> None:
        self._client = client
        self.use_batch = use_batch
        #: requests made, for status
        self.requests = 0

    @property
    def mode(self) -> str:
        return "batch" if self.use_batch else "put"

    async def send(self, items: list[Outgoing]) -> Delivered:
        if not self.use_batch:
            return await self._put_each(items)
        self.requests += 1
        match await self._client.send_batch(items):
            case NoBatchEndpoint():
                log.warning("sync.batch_unsupported", client=repr(self._client))
                self.use_batch = False
                return await self._put_each(items)
            case TooLarge() | Refused() if len(items) > 1:
                return await self._halves(items)
            case TooLarge(message):
                return [Refused(413, message)]
            case Refused() as refused:
                return [refused]
            case answer:
                return answer

    async def _halves(self, items: list[Outgoing]) -> Delivered:
        """Each half on its own; an outcome for them all ends it (the rest is not sent)."""
        middle = len(items) // 2
        first = await self.send(items[:middle])
        if not isinstance(first, list):
            return first
        second = await self.send(items[middle:])
        if not isinstance(second, list):
            return second
        return first + second

    async def _put_each(self, items: list[Outgoing]) -> list[Outcome]:
        """One PUT per trace, PUT_CONCURRENCY at a time. Each outcome is that trace's alone
        (a refused key, a transport error included): the PUTs that succeeded beside a
        failed one are still acknowledged."""
        gate = asyncio.Semaphore(PUT_CONCURRENCY)

        async def put(item: Outgoing) -> Outcome:
            async with gate:
                self.requests += 1
                return await self._client.put(item)

        return list(await asyncio.gather(*(put(i) for i in items)))
