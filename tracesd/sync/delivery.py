"""Delivery: how a batch of traces reaches the server, however the server can take it.

A trace becomes a BatchItem (openapi.json): the fields the real Traces CLI sends for it
(`payload`), encoded once. A batch goes to the batch
endpoint; when the server says it is too large (413) or refuses it as a whole (another
4xx), it is halved until the culprit stands alone; a server without a batch endpoint
(404/405) gets one PUT per trace, a few at a time, from then on. Whatever happens, the
caller gets one result per trace, in order, or an exception that concerns them all.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

import structlog

from tracesd.errors import (
    BackendAuthError,
    BackendRejected,
    BackendUnavailable,
    BatchUnsupported,
    PayloadTooLarge,
)
from tracesd.git.remote_url import canonical_or_none
from tracesd.models import Trace
from tracesd.store.outbox import Pending
from tracesd.sync.answers import ItemResult
from tracesd.sync.client import BackendClient, Outgoing

log = structlog.get_logger("tracesd.delivery")

#: a batch request is cut before its JSON reaches this size
MAX_BATCH_BYTES = 1024 * 1024
#: concurrent PUTs when the server has no batch endpoint
PUT_CONCURRENCY = 8

#: the real Traces CLI's title rule (0.6.31, `PB`): at most this many UTF-16 code units...
TITLE_CUT = 100
#: ...the longer ones cut to TITLE_CUT - 3 and this appended
TITLE_ELLIPSIS = "..."


def payload(trace: Trace, *, send_titles: bool) -> dict[str, Any]:
    """The BatchItem (openapi.json) for a trace: the real Traces CLI's PUT field set
    (docs/traces-cli-0.6.31.md (f)), camelCase, a field without a value left out (never
    null), so the server keeps what it has. Never `visibility` nor `targetNamespaceId`
    (sharing is the user's decision, taken in the CLI); never `preview` nor `timestamp`
    (the CLI sends neither: less text leaves the machine).

    A trace the CLI has shared (`shared_url` set) gets its git context only: the CLI set
    title, model, project and start itself when it shared it, and the server keeps the
    fields left out, so we never overwrite the CLI's values with ours. Any other trace
    (`[sync] scope = "all"`) gets what the CLI would send for it; its title only with
    `send_titles`, cut as the CLI cuts."""
    item: dict[str, Any] = {"externalId": trace.id, "agentId": trace.agent_id}
    if trace.shared_url is None:
        title = cli_title(trace.title) if send_titles else None
        directory = trace.directory or None
        fields: dict[str, Any] = {
            "title": title,
            "projectPath": directory,
            "projectName": project_name(directory),
            "model": trace.model,
            "sourceCreatedAt": trace.created_at,
        }
        item.update((key, value) for key, value in fields.items() if value is not None)
    git = {
        "gitRemoteUrl": _canonical(trace.git_remote_url),
        "gitBranch": trace.git_branch,
        "gitRef": trace.git_ref,
    }
    item.update((key, value) for key, value in git.items() if value is not None)
    return item


def cli_title(title: str | None) -> str | None:
    """A title as the real CLI cuts one: whole when at most TITLE_CUT UTF-16 code units
    (JavaScript's `length`), else its first TITLE_CUT - 3 units and "..." (a surrogate pair
    the cut would split is dropped whole: a lone half is not text)."""
    if not title:
        return None
    units = title.encode("utf-16-le", "surrogatepass")
    if len(units) <= 2 * TITLE_CUT:
        return title
    kept = units[: 2 * (TITLE_CUT - len(TITLE_ELLIPSIS))]
    if 0xD800 <= int.from_bytes(kept[-2:], "little") <= 0xDBFF:
        kept = kept[:-2]
    return kept.decode("utf-16-le", "surrogatepass") + TITLE_ELLIPSIS


#: stored URLs are canonical already (capture and migration 5 make them so); this is the
#: guarantee for any other, and a sync sends the same few repositories many times
_canonical = functools.lru_cache(maxsize=1024)(canonical_or_none)


def project_name(directory: str | None) -> str | None:
    """The last component of a directory, as the real CLI computes `projectName` (`fht`):
    trailing separators dropped, `/` and `\\` both separators; None when nothing is left."""
    if not directory:
        return None
    trimmed = directory.rstrip("/\\")
    if not trimmed:
        return None
    return re.split(r"[/\\]+", trimmed)[-1] or None


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
