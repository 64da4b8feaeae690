"""The Traces API client: the only aiohttp client, and the one place its errors are translated.

Every request has explicit timeouts, follows no redirect (a key must never travel to
another host), and reads a bounded body. What comes back is translated once:

* 2xx: results, one per trace;
* 401/403: BackendAuthError; 413: PayloadTooLarge; 404/405 on the batch endpoint:
  BatchUnsupported;
* network errors, timeouts, 408, 425, 429, 5xx, any status outside 2xx and 4xx (1xx, 3xx,
  600 and up) and answers that do not parse: BackendUnavailable (MalformedAnswer for the
  latter), with the server's hint: Retry-After (seconds or an HTTP date) or the body's
  `error.details.retryAt` (epoch ms, what the hosted API sends with a 429), the later;
* another 4xx: BackendRejected for a whole batch, a failed ItemResult for one trace.

Nothing read from an answer is used before answers.py has parsed it, so no answer, however
malformed, raises anything but these errors.

The API key goes into one header and nowhere else: not into messages, logs or reprs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from tracesd.errors import (
    BackendAuthError,
    BackendRejected,
    BackendUnavailable,
    BatchUnsupported,
    PayloadTooLarge,
)
from tracesd.sync.answers import (
    AUTH,
    RETRYABLE,
    ItemResult,
    batch_results,
    error_message,
    printable,
    retry_at,
)
from tracesd.sync.answers import retry_after as parse_retry_after

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10, sock_read=20)
#: the largest answer we read: results of a 500-trace batch are far smaller
MAX_BODY = 1024 * 1024

__all__ = ["MAX_BODY", "TIMEOUT", "BackendClient", "ItemResult", "Outgoing", "open_session"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One trace to send: its BatchItem (openapi.json), and that item as JSON, encoded once
    (sync measures batches with it and the batch request is made of it)."""

    external_id: str
    fields: dict[str, Any]
    encoded: bytes

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Outgoing:
        return cls(str(fields["externalId"]), fields, _json(fields))


def open_session(timeout: aiohttp.ClientTimeout = TIMEOUT) -> aiohttp.ClientSession:
    """The HTTP session the client uses (the caller closes it)."""
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=16),
        headers={"User-Agent": "tracesd", "Content-Type": "application/json"},
    )


class BackendClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str | None) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/v1/traces"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:
        return f"BackendClient({self._base!r})"

    async def send_batch(self, items: list[Outgoing]) -> list[ItemResult]:
        """POST a batch; one result per item, in order."""
        data = b'{"traces":[' + b",".join(i.encoded for i in items) + b"]}"
        answer = await self._request("POST", "/batch", data)
        if answer.status in (404, 405):
            raise BatchUnsupported(f"the server has no batch endpoint (HTTP {answer.status})")
        answer.raise_for_status()
        return batch_results([i.external_id for i in items], answer.body)

    async def put(self, item: Outgoing) -> ItemResult:
        """PUT one trace; 404/405 mean the URL is wrong, which retrying later may fix."""
        external_id = item.external_id
        fields = {k: v for k, v in item.fields.items() if k != "externalId"}
        path = "/" + quote(external_id, safe="")
        answer = await self._request("PUT", path, _json(fields))
        if answer.status in (404, 405):
            raise BackendUnavailable(
                f"the API answered {answer.status} to PUT: check [sync] api_url ({self._base})"
            )
        if 400 <= answer.status < 500 and answer.status not in RETRYABLE | AUTH | {413}:
            return ItemResult(external_id, answer.status, answer.message())
        answer.raise_for_status()
        return ItemResult(external_id, answer.status)

    async def check(self) -> int:
        """GET one trace of the list: the HTTP status (200: reachable, key accepted)."""
        return (await self._request("GET", "?limit=1", None)).status

    async def _request(self, method: str, path: str, data: bytes | None) -> _Answer:
        where = f"{method} {self._base}{path}"
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=self._headers, allow_redirects=False
            ) as response:
                body = await _read(response.content)
                hint = _hint(response.status, response.headers.get("Retry-After"), body)
                return _Answer(response.status, body, hint)
        except TimeoutError:
            raise BackendUnavailable(f"{where}: timed out") from None
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"{where}: {printable(str(exc))}") from None
        except OSError as exc:
            raise BackendUnavailable(f"{where}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    retry_after: float | None

    def message(self) -> str:
        return error_message(self.body, self.status)

    def raise_for_status(self) -> None:
        """The error an answer that is not 2xx means (any status aiohttp lets through)."""
        status = self.status
        if 200 <= status < 300:
            return
        message = f"HTTP {status}: {self.message()}"
        if status in AUTH:
            raise BackendAuthError(f"the API key was refused ({message})")
        if status == 413:
            raise PayloadTooLarge(message)
        if 400 <= status < 500 and status not in RETRYABLE:
            raise BackendRejected(status, message)
        raise BackendUnavailable(message, retry_after=self.retry_after)


def _hint(status: int, header: str | None, body: bytes) -> float | None:
    """The server's "not before", in seconds: the later of the usable hints, or None."""
    if 200 <= status < 300:
        return None
    hints = [h for h in (parse_retry_after(header), retry_at(body)) if h is not None]
    return max(hints) if hints else None


async def _read(stream: aiohttp.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await stream.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise BackendUnavailable(f"answer larger than {MAX_BODY} bytes")
    return bytes(body)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def aclose(session: aiohttp.ClientSession) -> None:
    await session.close()
    # let the connector's transports finish closing (aiohttp's own advice)
    await asyncio.sleep(0)
