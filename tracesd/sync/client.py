"""The Traces API client: the only aiohttp client, and the one place its errors are translated.

Every request has explicit timeouts, follows no redirect (a key must never travel to
another host), and reads a bounded body. A network error, a timeout or an answer larger
than MAX_BODY is NotNow, with where it happened; any answer read is handed to wire.py,
which says what it means. So the sends return typed outcomes and raise nothing of their own,
whatever the server does.

The API key goes into one header and nowhere else: not into messages, logs or reprs.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp

from tracesd.errors import BackendUnavailable
from tracesd.sync.answers import printable
from tracesd.sync.wire import (
    Answer,
    BatchAnswer,
    KeyRefused,
    NotNow,
    Outcome,
    Outgoing,
    Refused,
    Stored,
    TooLarge,
    TraceMissing,
    batch_answer,
    batch_body,
    messages_answer,
    messages_body,
    put_answer,
    put_body,
)

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10, sock_read=20)
#: the largest answer we read: results of a 500-trace batch are far smaller
MAX_BODY = 1024 * 1024

__all__ = ["MAX_BODY", "TIMEOUT", "BackendClient", "aclose", "open_session"]


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

    async def send_batch(self, items: list[Outgoing]) -> BatchAnswer:
        """POST a batch: one outcome per item, in order, or one for the whole request."""
        answer = await self._exchange("POST", "/batch", batch_body(items))
        if isinstance(answer, NotNow):
            return answer
        return batch_answer([i.external_id for i in items], answer)

    async def put(self, item: Outgoing) -> Outcome:
        """PUT one trace: what the server said about it."""
        path = "/" + quote(item.external_id, safe="")
        answer = await self._exchange("PUT", path, put_body(item))
        if isinstance(answer, NotNow):
            return answer
        return put_answer(answer, url=self._base)

    async def send_messages(
        self, trace_id: str, entries: list[str]
    ) -> Stored | TraceMissing | KeyRefused | TooLarge | Refused | NotNow:
        """POST a batch of one trace's messages (each entry's JSON as queued)."""
        path = "/" + quote(trace_id, safe="") + "/messages/batch"
        answer = await self._exchange("POST", path, messages_body(entries))
        if isinstance(answer, NotNow):
            return answer
        return messages_answer(answer)

    async def check(self) -> int:
        """GET one trace of the list: the HTTP status (200: reachable, key accepted).
        Raises BackendUnavailable when no answer comes (doctor shows why)."""
        answer = await self._exchange("GET", "?limit=1", None)
        if isinstance(answer, NotNow):
            raise BackendUnavailable(answer.message)
        return answer.status

    async def _exchange(self, method: str, path: str, data: bytes | None) -> Answer | NotNow:
        where = f"{method} {self._base}{path}"
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=self._headers, allow_redirects=False
            ) as response:
                body = await _read(response.content)
                if body is None:
                    return NotNow(f"answer larger than {MAX_BODY} bytes")
                return Answer(response.status, response.headers.get("Retry-After"), body)
        except TimeoutError:
            return NotNow(f"{where}: timed out")
        except aiohttp.ClientError as exc:
            return NotNow(f"{where}: {printable(str(exc))}")
        except OSError as exc:
            return NotNow(f"{where}: {exc.strerror}")


async def _read(stream: aiohttp.StreamReader) -> bytes | None:
    """The body, or None once it passes MAX_BODY (the rest is not read)."""
    body = bytearray()
    while chunk := await stream.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


async def aclose(session: aiohttp.ClientSession) -> None:
    await session.close()
    # let the connector's transports finish closing (aiohttp's own advice)
    await asyncio.sleep(0)
