"""Group commit: concurrent writers share one transaction.

An ingest arriving while a transaction is in flight joins the next one, so a scan commits
hundreds of captures per transaction while a lone new session still commits at once. A
group the database refuses (RowRejected) is retried one capture at a time, so a bad row
only ever fails its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tracesd.errors import RowRejected
from tracesd.models import Capture

#: most captures one transaction carries
MAX_GROUP = 500

Commit = Callable[[list[Capture]], Awaitable[set[str]]]
_Waiting = list[tuple[Capture, asyncio.Future[frozenset[str]]]]


class GroupCommit:
    """`commit(captures)` writes them in one transaction and returns the ids it inserted."""

    def __init__(self, commit: Commit) -> None:
        self._commit_many = commit
        self._pending: _Waiting = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, capture: Capture) -> frozenset[str]:
        """Commit `capture` with whatever else is waiting; the ids of `capture.new` that
        this commit inserted."""
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._pending.append((capture, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="store-flush")
        return await future

    async def drain(self) -> None:
        """Wait for the transactions in flight (at close)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            try:
                inserted = await self._commit_many([capture for capture, _ in group])
            except RowRejected as exc:
                if len(group) > 1:
                    for capture, future in group:  # find the culprit, keep the rest
                        await _settle(future, capture, self._commit_many([capture]))
                else:
                    _resolve(group, exc)
            except asyncio.CancelledError:
                _resolve(group, None, cancel=True)
                _resolve(self._pending, None, cancel=True)
                raise
            except Exception as exc:
                _resolve(group, exc)
            else:
                _resolve(group, None, inserted=inserted)


async def _settle(
    future: asyncio.Future[frozenset[str]], capture: Capture, work: Awaitable[set[str]]
) -> None:
    try:
        inserted = await work
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(frozenset(t.id for t in capture.new if t.id in inserted))


def _resolve(
    group: _Waiting,
    exc: BaseException | None,
    *,
    cancel: bool = False,
    inserted: set[str] | None = None,
) -> None:
    unclaimed = set(inserted or ())
    for capture, future in group:
        if future.done():
            continue  # its caller was cancelled meanwhile
        if cancel:
            future.cancel()
        elif exc is not None:
            future.set_exception(exc)
        else:
            # an id two captures of one group both brought is inserted once, by the first
            mine = frozenset(t.id for t in capture.new if t.id in unclaimed)
            unclaimed -= mine
            future.set_result(mine)
