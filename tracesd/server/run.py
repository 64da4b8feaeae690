"""`tracesd server`: check the startup rules, open the database, serve until a signal.

Refusals are ConfigErrors (the CLI prints one line and exits 2): no tokens without
`--no-auth`, and `--no-auth` on anything but a loopback address. SIGTERM or SIGINT stop
the server gracefully: stop listening, let requests in flight finish (bounded), close the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
from collections.abc import Sequence

import structlog
from aiohttp import web

from tracesd.errors import ConfigError, ListenError
from tracesd.server.app import make_app
from tracesd.server.auth import ANONYMOUS, users_for
from tracesd.server.edge import Edge, EdgeSite, Limits
from tracesd.server.secrecy import masking
from tracesd.server.storage import engine_of, open_storage, redacted

log = structlog.get_logger("tracesd.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
#: how long requests in flight may take to finish after a stop signal
SHUTDOWN_GRACE_S = 5.0
TOKENS_ENV = "TRACESD_SERVER_TOKENS"


def check_startup(host: str, tokens: Sequence[str], *, no_auth: bool) -> None:
    """Raise ConfigError unless the server may start with these settings."""
    if no_auth:
        if not is_loopback(host):
            raise ConfigError(
                f"--no-auth serves loopback only (127.0.0.1, ::1, localhost); got {host!r}",
                key="--host",
            )
    elif not tokens:
        raise ConfigError(
            "not set (comma-separated tokens; or --no-auth for a local trial on loopback)",
            key=TOKENS_ENV,
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve(*, host: str, port: int, db: str, tokens: Sequence[str], no_auth: bool) -> int:
    """Run until SIGTERM or SIGINT on `db` (a SQLite path or a PostgreSQL URL); the exit
    code. Raises ConfigError, StoreError, ListenError."""
    check_startup(host, tokens, no_auth=no_auth)
    limits = Limits.from_env(os.environ)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(masking(() if no_auth else tokens))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)
        # traces stored before namespaces existed go to the first token's user
        owner = ANONYMOUS if no_auth else users_for(tokens)[0]
        storage = await open_storage(
            db, legacy_namespace=owner.namespace_id, pool_size=limits.db_pool
        )
        stack.push_async_callback(storage.close)
        app = make_app(storage, tokens=None if no_auth else tokens, body_timeout_s=limits.body_s)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        edge = Edge(runner, limits)
        stack.enter_context(edge.installed(loop))
        try:
            await EdgeSite(edge, host, port).start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        log.info(
            "server.started",
            host=host,
            port=_bound_port(runner, port),
            engine=engine_of(db),
            db=redacted(db),
            db_pool=limits.db_pool,
            auth="off" if no_auth else "on",
            tokens=0 if no_auth else len(tokens),
            max_connections=limits.max_connections,
            header_timeout_s=limits.header_s,
            idle_timeout_s=limits.idle_s,
            body_timeout_s=limits.body_s,
        )
        await stop.wait()
        log.info("server.stopping")
    log.info("server.stopped")
    return 0


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    """The port actually bound (differs from the requested one for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
