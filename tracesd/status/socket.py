"""The status socket: HTTP/1.1 over a Unix socket, and the small client the CLI uses.

`GET /status` (INTERFACE section 6), `POST /sync` and `GET /metrics` (Prometheus text).
The socket is 0600 in a 0700 directory of ours (`private.private_directory`: a directory
another user owns is refused): only this user can ask. One daemon per socket: if the
socket answers, a second `tracesd run` refuses to start and names the running pid; a
socket of ours nobody answers on is stale and removed. Anything else at the path (a file,
a directory, a symlink, another user's socket) is refused and left untouched: the path
comes from `--socket` or `[status] socket_path`, and a typo must not delete a file. The
socket is unlinked on exit.

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
from tracesd.private import private_directory
from tracesd.status import wire
from tracesd.status.document import Status

log = structlog.get_logger("tracesd.status")

#: a connection that has sent nothing (or half a request) for this long is closed
IDLE_TIMEOUT_S = 2.0
MAX_REQUEST = 64 * 1024
PROBE_TIMEOUT_S = 2.0
#: sun_path holds 108 bytes on Linux, 104 on macOS, a terminating NUL included
MAX_SOCKET_PATH = 103
#: the setting a refused socket path is blamed on (`--socket` sets it too)
SOCKET_KEY = "status.socket_path"

Document = Callable[[], Awaitable[Status]]
SyncNow = Callable[[], Awaitable[dict[str, Any]]] | None
Metrics = Callable[[Status], bytes]


class StatusServer:
    def __init__(
        self,
        socket_path: Path,
        *,
        home: Path,
        document: Document,
        sync_now: SyncNow,
        metrics: Metrics,
    ) -> None:
        self.path = socket_path
        self._home = home
        self._document = document
        self._sync_now = sync_now
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self._inode: int | None = None

    async def check_single_instance(self) -> None:
        """Before anything is touched: the path fits, its directory is private, and what is
        at the path is nothing or a stale socket of ours (removed). Raise AlreadyRunning if a
        daemon answers on it, ConfigError (naming the key) for anything else there."""
        size = len(os.fsencode(self.path))
        if size > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the status socket path is {size} bytes, more than the {MAX_SOCKET_PATH} a"
                f" Unix socket allows: {self.path}",
                key=SOCKET_KEY,
            )
        private_directory(self.path.parent, key=SOCKET_KEY, home=self._home)
        if not _our_socket(self.path):
            return
        try:
            answer = await request(self.path, "GET", "/status", timeout_s=PROBE_TIMEOUT_S)
        except NotRunning:
            log.info("status.stale_socket_removed", socket=str(self.path))
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        raise AlreadyRunning(answer.get("pid", "unknown"), f"socket {self.path}")

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=[_errors])
        app.router.add_get("/status", self._status)
        app.router.add_post("/sync", self._sync)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(
            app, keepalive_timeout=IDLE_TIMEOUT_S, handle_signals=False, access_log=None
        )
        await self._runner.setup()
        # Bound here, not by asyncio's create_unix_server: that one removes a socket file
        # already at the path, the live socket of a daemon that started a moment ago too.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            self._inode = os.stat(self.path).st_ino
            os.chmod(self.path, 0o600)
            await web.SockSite(self._runner, listener).start()
        except OSError as exc:
            listener.close()
            self._unlink_ours()
            await self._runner.cleanup()
            self._runner = None
            if exc.errno == errno.EADDRINUSE:  # another daemon bound it a moment ago
                raise AlreadyRunning("unknown", f"socket {self.path}") from None
            raise
        self._inode = os.stat(self.path).st_ino
        log.info("status.listening", socket=str(self.path))

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._unlink_ours()

    def _unlink_ours(self) -> None:
        # Only our own socket (a successor may already have bound a new one).
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(wire.as_json(await self._document()))

    async def _sync(self, request: web.Request) -> web.Response:
        if self._sync_now is None:
            return _error(409, "sync_disabled", "sync is off: set [sync] api_url in the config")
        return web.json_response(await self._sync_now())

    async def _metrics_page(self, request: web.Request) -> web.Response:
        body = self._metrics(await self._document())
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


def _our_socket(path: Path) -> bool:
    """True for a socket of ours at `path`, False for nothing; ConfigError for anything
    else (never followed, never removed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid():
        return True
    if stat.S_ISSOCK(st.st_mode):
        what = f"a socket of uid {st.st_uid}"
    elif stat.S_ISLNK(st.st_mode):
        what = "a symbolic link"
    elif stat.S_ISDIR(st.st_mode):
        what = "a directory"
    elif stat.S_ISREG(st.st_mode):
        what = "a regular file"
    else:
        what = "not a socket"
    raise ConfigError(
        f"{path} is {what}, not a tracesd socket: refusing to remove it (it was left"
        " untouched); choose another --socket or [status] socket_path, or move it away",
        key=SOCKET_KEY,
    )


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
