"""The status socket: HTTP/1.1 over a Unix socket, and the small client the CLI uses.

`GET /status` (INTERFACE section 6), `POST /sync` and `GET /metrics` (Prometheus text).
The socket is 0600 in a 0700 directory: only this user can ask. One daemon per socket: if
the socket answers, a second `tracesd run` refuses to start and names the running pid; a
socket nobody answers on is stale and removed. The file is unlinked on exit.

A client that connects and says nothing, or sends a half request, is dropped after a
couple of seconds (aiohttp's keep-alive timeout applies from the first byte), and a
request body is capped, so a stuck or hostile client never delays the others.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from tracesd.errors import AlreadyRunning, ConfigError, NotRunning, TracesdError

log = structlog.get_logger("tracesd.status")

#: a connection that has sent nothing (or half a request) for this long is closed
IDLE_TIMEOUT_S = 2.0
MAX_REQUEST = 64 * 1024
PROBE_TIMEOUT_S = 2.0
#: sun_path holds 108 bytes on Linux, 104 on macOS, a terminating NUL included
MAX_SOCKET_PATH = 103

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
SyncNow = Callable[[], Awaitable[dict[str, Any]]] | None
Metrics = Callable[[dict[str, Any]], bytes]


class StatusServer:
    def __init__(
        self, socket_path: Path, *, snapshot: Snapshot, sync_now: SyncNow, metrics: Metrics
    ) -> None:
        self.path = socket_path
        self._snapshot = snapshot
        self._sync_now = sync_now
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self._inode: int | None = None

    async def check_single_instance(self) -> None:
        """Raise AlreadyRunning if a daemon answers; remove the socket if nobody does."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        try:
            answer = await request(self.path, "GET", "/status", timeout_s=PROBE_TIMEOUT_S)
        except NotRunning:
            log.info("status.stale_socket_removed", socket=str(self.path))
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        raise AlreadyRunning(self.path, answer.get("pid", "unknown"))

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the status socket path is {len(os.fsencode(self.path))} bytes, more than"
                f" the {MAX_SOCKET_PATH} a Unix socket allows: {self.path}",
                key="status.socket_path",
            )
        _private_directory(self.path.parent)
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=[_errors])
        app.router.add_get("/status", self._status)
        app.router.add_post("/sync", self._sync)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(
            app, keepalive_timeout=IDLE_TIMEOUT_S, handle_signals=False, access_log=None
        )
        await self._runner.setup()
        site = web.UnixSite(self._runner, str(self.path))
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            if exc.errno == errno.EADDRINUSE:  # another daemon bound it a moment ago
                raise AlreadyRunning(self.path, "unknown") from None
            raise
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        log.info("status.listening", socket=str(self.path))

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        # Unlink only our own socket (a successor may already have bound a new one).
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._snapshot())

    async def _sync(self, request: web.Request) -> web.Response:
        if self._sync_now is None:
            return _error(409, "sync_disabled", "sync is off: set [sync] api_url in the config")
        return web.json_response(await self._sync_now())

    async def _metrics_page(self, request: web.Request) -> web.Response:
        body = self._metrics(await self._snapshot())
        return web.Response(
            body=body,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _private_directory(path: Path) -> None:
    """The socket's directory: created 0700; an existing one of ours is tightened to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.stat(path)
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


# ------------------------------------------------------------------------------ client


async def request(
    socket_path: Path, method: str, path: str, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Ask the daemon; NotRunning when nobody answers on the socket."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.request(method, f"http://localhost{path}") as response,
        ):
            body = await response.read()
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError, TimeoutError):
        raise NotRunning(f"no tracesd answers on {socket_path}") from None
    try:
        answer: dict[str, Any] = json.loads(body)
    except ValueError:
        raise NotRunning(f"something that is not tracesd answers on {socket_path}") from None
    if response.status >= 400:
        error = answer.get("error", {})
        raise TracesdError(error.get("message", f"HTTP {response.status}"))
    return answer


def socket_answers(socket_path: Path) -> bool:
    """A cheap synchronous probe: does anything accept connections on the socket?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True
