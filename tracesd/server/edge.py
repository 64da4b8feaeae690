"""The server's connection edge: how long a client may take, and how many may be open.

aiohttp bounds the idle time of a connection (`keepalive_timeout`, armed at accept and
after every answer: a silent or trickling client is closed when it fires) and the size of
a request line and headers (`max_line_size`, `max_field_size`, `max_headers`); it has no
bound on header time, and none on connections. This module adds both, around aiohttp's
own `RequestHandler`:

- header time: from the first byte of a request, its line and headers must arrive within
  `header_s`, else the connection is closed (a client trickling a byte a second holds no
  socket for long). The body has its own bound, enforced where it is read (app.py).
- connections: at most `max_connections` open, derived from RLIMIT_NOFILE with headroom so
  that accept() keeps working (`connection_cap`). A new connection beyond it closes the one
  idle longest (no request in progress); with none idle, the new one is closed at once.
- accept() failing for want of descriptors (EMFILE, ENFILE, ...): asyncio pauses accepting
  for a second, but logs a traceback for each failed accept() of its loop (up to a
  backlog's worth a second); we count them instead.

Overload is logged once per episode: `server.connections_full` / `server.accept_failed`
when it starts, `..._ended` with counts once it has not recurred for 2 s. Per-connection
cuts are logged at debug. aiohttp's error logging is replaced: a malformed request is
`server.bad_request` naming the error's type, never its text (which quotes the request's
bytes: its token).

Defaults (header 10 s, idle 30 s, body 30 s, cap from the limit) can be overridden with
TRACESD_SERVER_HEADER_TIMEOUT_S, _IDLE_TIMEOUT_S, _BODY_TIMEOUT_S, _MAX_CONNECTIONS, and the
PostgreSQL pool (default 10 connections per process) with TRACESD_SERVER_DB_POOL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import resource
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from tracesd.errors import ConfigError
from tracesd.server.secrecy import failure

log = structlog.get_logger("tracesd.server")

HEADER_TIMEOUT_ENV = "TRACESD_SERVER_HEADER_TIMEOUT_S"
IDLE_TIMEOUT_ENV = "TRACESD_SERVER_IDLE_TIMEOUT_S"
BODY_TIMEOUT_ENV = "TRACESD_SERVER_BODY_TIMEOUT_S"
MAX_CONNECTIONS_ENV = "TRACESD_SERVER_MAX_CONNECTIONS"
DB_POOL_ENV = "TRACESD_SERVER_DB_POOL"
LINGER_S = 2.0
_ACCEPT_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _nofile() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 65536 if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def listen_backlog(nofile: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go."""
    return min(128, max(16, nofile // 8))


def connection_cap(nofile: int) -> int:
    """Connections allowed under a descriptor limit.

    Kept back: an eighth, and at least one backlog's worth plus 64. asyncio accepts up to
    a backlog of connections before any is closed (those evicted for them included), and
    the process has its own descriptors (database, event loop, pipes).
    """
    return max(8, nofile - max(nofile // 8, listen_backlog(nofile) + 64))


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection time bounds (seconds) and the connection cap."""

    header_s: float = 10.0
    idle_s: float = 30.0  # longer than clients' pool idle time (aiohttp's is 15 s)
    body_s: float = 30.0
    max_connections: int = field(default_factory=lambda: connection_cap(_nofile()))
    backlog: int = field(default_factory=lambda: listen_backlog(_nofile()))
    #: PostgreSQL connections one server process opens at most (SQLite: unused)
    db_pool: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """The defaults, overridden by the environment; ConfigError names a bad variable."""
        default = cls()
        return cls(
            header_s=_seconds(env, HEADER_TIMEOUT_ENV, default.header_s),
            idle_s=_seconds(env, IDLE_TIMEOUT_ENV, default.idle_s),
            body_s=_seconds(env, BODY_TIMEOUT_ENV, default.body_s),
            max_connections=_count(env, MAX_CONNECTIONS_ENV, default.max_connections),
            backlog=default.backlog,
            db_pool=_count(env, DB_POOL_ENV, default.db_pool),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.05 <= value <= 86400):
        raise ConfigError(f"must be a number of seconds from 0.05 to 86400, got {text!r}", key=name)
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1_000_000):
        raise ConfigError(f"must be a whole number from 1 to 1000000, got {text!r}", key=name)
    return int(text)


class Episode:
    """A condition logged when it starts, and when it has not recurred for `quiet_s` (with
    counts per kind), not once per instance."""

    def __init__(self, event: str, quiet_s: float = 2.0) -> None:
        self.event = event
        self.quiet_s = quiet_s
        self.counts: dict[str, int] = {}
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def hit(self, kind: str, **fields: Any) -> None:
        if not self.counts:
            self._since = time.monotonic()
            log.warning(self.event, first=kind, **fields)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.quiet_s, self.end)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.counts:
            duration = round(time.monotonic() - self._since, 3)
            log.warning(f"{self.event}_ended", duration_s=duration, **self.counts)
            self.counts = {}


class Edge:
    """The connections of one server: their bounds, their count, the overload episodes."""

    def __init__(self, runner: web.AppRunner, limits: Limits) -> None:
        self.runner = runner
        self.limits = limits
        #: open connections with no request in progress, the longest idle first
        self._idle: dict[Connection, None] = {}
        self._open = 0
        self.full = Episode("server.connections_full")
        self.accept_failed = Episode("server.accept_failed")
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def connection(self) -> Connection:
        """The protocol factory for loop.create_server."""
        server = self.runner.server
        assert server is not None, "runner.setup() first"
        # lingering: after an answer, the unread rest of a body is drained (so the client
        # can read the answer) for at most this long; aiohttp's default is 10 s
        options: dict[str, Any] = {"access_log": None, "lingering_time": LINGER_S}
        return Connection(
            self,
            server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self.limits.idle_s,
            **options,
        )

    def opened(self, conn: Connection) -> bool:
        """Count a new connection; False when it must be closed at once."""
        if self._open >= self.limits.max_connections:
            if not self._idle:
                self.full.hit("refused", max_connections=self.limits.max_connections)
                return False
            oldest = next(iter(self._idle))
            self.full.hit("evicted", max_connections=self.limits.max_connections)
            oldest.force_close()
            self.closed(oldest)
        self._open += 1
        self._idle[conn] = None
        return True

    def closed(self, conn: Connection) -> None:
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._idle.pop(conn, None)

    def busy(self, conn: Connection, busy: bool) -> None:
        if conn.counted:
            self._idle.pop(conn, None)
            if not busy:
                self._idle[conn] = None  # now the most recently active

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's exception handler while serving: accept failures become an episode."""
        exc = context.get("exception")
        accept = "accept" in str(context.get("message", ""))
        if accept and isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRNOS:
            self.accept_failed.hit(errno.errorcode.get(exc.errno or 0, "?"))
        elif isinstance(context.get("protocol"), Connection):
            # a failure inside a connection's callbacks: its text may quote the request
            log.error("server.connection_failed", **failure(exc))
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Be the loop's exception handler while inside (deferring to the one before)."""
        previous = self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self.on_loop_error)
        try:
            yield
        finally:
            loop.set_exception_handler(previous)
            self.full.end()
            self.accept_failed.end()


class Connection(web.RequestHandler):
    """aiohttp's handler of one connection, with a header deadline and a quiet error path."""

    def __init__(self, edge: Edge, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.edge = edge
        self.counted = False
        self._busy = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.counted = self.edge.opened(self)
        if not self.counted:
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        self.edge.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self._busy and self._header_timer is None:
            self._header_timer = asyncio.get_running_loop().call_later(
                self.edge.limits.header_s, self._header_expired
            )
        super().data_received(data)

    def request_started(self) -> None:
        self._busy = True
        self._stop_header_timer()
        self.edge.busy(self, True)

    def request_finished(self) -> None:
        self._busy = False
        self.edge.busy(self, False)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        if not self._busy and self.transport is not None:
            log.debug("server.header_timeout", header_s=self.edge.limits.header_s)
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or serve, without its text."""
        if status >= 500:
            log.error("server.internal_error", method=request.method, **failure(exc))
            code, text = "internal", "internal server error"
        else:
            error = type(exc).__name__ if exc is not None else "unknown"
            log.info("server.bad_request", status=status, error=error, remote=request.remote)
            code, text = "bad_request", f"malformed HTTP request ({error})"
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent")
        response = web.json_response(
            {"ok": False, "error": {"code": code, "message": text}}, status=status
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's log of a failure outside a handler: a client's broken body (met again
        while draining it) is routine; anything else is ours, logged without its text."""
        exc = kw.get("exc_info")
        exc = exc if isinstance(exc, BaseException) else None
        if isinstance(exc, (web.RequestPayloadError, HttpProcessingError, ConnectionError)):
            log.debug("server.connection_dropped", error=type(exc).__name__)
        else:
            log.error("server.internal_error", **failure(exc))


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection a request is in progress (no header deadline, not evictable)."""
    conn = request.protocol
    if not isinstance(conn, Connection):
        return await handler(request)
    conn.request_started()
    try:
        return await handler(request)
    finally:
        conn.request_finished()


class EdgeSite(web.BaseSite):
    """A TCP site whose connections are `Edge` connections."""

    def __init__(self, edge: Edge, host: str, port: int) -> None:
        super().__init__(edge.runner, backlog=edge.limits.backlog)
        self._edge = edge
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._edge.connection, self._host, self._port, backlog=self._backlog
        )
