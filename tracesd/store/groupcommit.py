"""Group commit: concurrent writers share one transaction.

A request arriving while a transaction is in flight joins the next one, so many concurrent
writers cost one transaction while a lone writer still commits at once. Used by the store
(an ingest's capture per request: a scan commits hundreds per transaction) and by the
server's database (a PUT's or batch's items per request).

`commit(requests)` writes a group in one transaction and returns one result per request,
in order. A group the database refuses with one of the `alone` errors is committed again
one request at a time, so a bad request only ever fails its own caller; any other error
fails the whole group (none of it was written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class GroupCommit(Generic[Request, Result]):
    def __init__(
        self,
        commit: Callable[[list[Request]], Awaitable[list[Result]]],
        *,
        max_group: int,
        size: Callable[[Request], int] | None = None,
        alone: tuple[type[Exception], ...] = (),
        name: str = "group-commit",
    ) -> None:
        """`max_group`: most units one transaction carries, whole requests only, and at
        least one request however large. `size`: a request's units (default: 1 each)."""
        self._commit = commit
        self._max_group = max_group
        self._size = size
        self._alone = alone
        self._name = name
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, request: Request) -> Result:
        """Commit `request` with whatever else is waiting; its result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await future

    async def drain(self) -> None:
        """Wait for the transactions in flight (at close): accepted requests are
        committed, not dropped."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            count = self._group_size()
            group, self._pending = self._pending[:count], self._pending[count:]
            try:
                results = await self._commit([request for request, _ in group])
            except asyncio.CancelledError:
                for _, future in (*group, *self._pending):
                    future.cancel()
                self._pending = []
                raise
            except Exception as exc:
                if len(group) > 1 and isinstance(exc, self._alone):
                    for request, future in group:  # find the culprit, keep the rest
                        await self._commit_alone(request, future)
                else:
                    for _, future in group:
                        if not future.done():  # done: its caller went away meanwhile
                            future.set_exception(exc)
            else:
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)

    async def _commit_alone(self, request: Request, future: asyncio.Future[Result]) -> None:
        try:
            [result] = await self._commit([request])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    def _group_size(self) -> int:
        """How many waiting requests the next transaction takes."""
        if self._size is None:
            return self._max_group
        total = 0
        for count, (request, _) in enumerate(self._pending):
            total += self._size(request)
            if total > self._max_group and count > 0:
                return count
        return len(self._pending)
