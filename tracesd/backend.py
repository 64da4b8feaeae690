"""The Traces API client: the only aiohttp client, and the one place its errors are translated.

Every request has explicit timeouts, follows no redirect (a key must never travel to
another host), and reads a bounded body. What comes back is translated once:

* 2xx: results, one per trace;
* 401/403: BackendAuthError; 413: PayloadTooLarge; 404/405 on the batch endpoint:
  BatchUnsupported;
* network errors, timeouts, 3xx, 408, 425, 429, 5xx and answers that do not parse:
  BackendUnavailable, with the server's Retry-After (seconds or an HTTP date);
* another 4xx: BackendRejected for a whole batch, a failed ItemResult for one trace.

The API key goes into one header and nowhere else: not into messages, logs or reprs.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
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

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10, sock_read=20)
#: the largest answer we read: results of a 500-trace batch are far smaller
MAX_BODY = 1024 * 1024
_RETRYABLE = frozenset({408, 425, 429})


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


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the server said about one trace."""

    external_id: str
    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status in _RETRYABLE or self.status >= 500 or self.status in (401, 403)


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
        status, body, retry_after = await self._request("POST", "/batch", data)
        if status in (404, 405):
            raise BatchUnsupported(f"the server has no batch endpoint (HTTP {status})")
        self._raise_for(status, body, retry_after)
        return _batch_results(items, body)

    async def put(self, item: Outgoing) -> ItemResult:
        """PUT one trace; 404/405 mean the URL is wrong, which retrying later may fix."""
        external_id = item.external_id
        fields = {k: v for k, v in item.fields.items() if k != "externalId"}
        path = "/" + quote(external_id, safe="")
        status, body, retry_after = await self._request("PUT", path, _json(fields))
        if status in (404, 405):
            raise BackendUnavailable(
                f"the API answered {status} to PUT: check [sync] api_url ({self._base})"
            )
        if 400 <= status < 500 and status not in _RETRYABLE | {401, 403, 413}:
            return ItemResult(external_id, status, _message(body, status))
        self._raise_for(status, body, retry_after)
        return ItemResult(external_id, status)

    async def check(self) -> int:
        """GET one trace of the list: the HTTP status (200: reachable, key accepted)."""
        try:
            async with self._session.get(
                self._base, params={"limit": "1"}, headers=self._headers, allow_redirects=False
            ) as response:
                await _read(response.content)
                return response.status
        except TimeoutError:
            raise BackendUnavailable(f"GET {self._base}: timed out") from None
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"GET {self._base}: {exc}") from None

    async def _request(
        self, method: str, path: str, data: bytes
    ) -> tuple[int, bytes, float | None]:
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=self._headers, allow_redirects=False
            ) as response:
                body = await _read(response.content)
                return response.status, body, _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise BackendUnavailable(f"{method} {self._base}{path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"{method} {self._base}{path}: {exc}") from None
        except OSError as exc:
            raise BackendUnavailable(f"{method} {self._base}{path}: {exc.strerror}") from None

    def _raise_for(self, status: int, body: bytes, retry_after: float | None) -> None:
        if 200 <= status < 300:
            return
        message = f"HTTP {status}: {_message(body, status)}"
        if status in (401, 403):
            raise BackendAuthError(f"the API key was refused ({message})")
        if status == 413:
            raise PayloadTooLarge(message)
        if status in _RETRYABLE or status >= 500 or 300 <= status < 400:
            raise BackendUnavailable(message, retry_after=retry_after)
        raise BackendRejected(status, message)


async def _read(stream: aiohttp.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await stream.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise BackendUnavailable(f"answer larger than {MAX_BODY} bytes")
    return bytes(body)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _batch_results(items: list[Outgoing], body: bytes) -> list[ItemResult]:
    """The per-item results, checked against what was sent: anything else is malformed."""
    try:
        results = json.loads(body)["results"]
        parsed = [
            ItemResult(
                str(r["externalId"]),
                int(r["status"]),
                str((r.get("error") or {}).get("message", "")),
            )
            for r in results
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BackendUnavailable("malformed answer to the batch request") from None
    if [r.external_id for r in parsed] != [i.external_id for i in items]:
        raise BackendUnavailable("the batch answer does not match the traces sent")
    return parsed


def _message(body: bytes, status: int) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"[:500]
    except (ValueError, TypeError, KeyError):
        return body[:200].decode("utf-8", "replace") or f"HTTP {status}"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def aclose(session: aiohttp.ClientSession) -> None:
    await session.close()
    # let the connector's transports finish closing (aiohttp's own advice)
    await asyncio.sleep(0)
