"""The command line: parse arguments, load config, run a command, pick the exit code.

Exit codes: 0 ok; 1 runtime failure; 2 usage or config error (the message names the key
and the file); 3 the daemon is not running (for commands that need it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from tracesd import __version__, doctor, listing, logs, private, terminal
from tracesd.app import COMMAND, App
from tracesd.capture.adapters import AGENT_IDS
from tracesd.capture.scan import Report
from tracesd.config import Config, load_config
from tracesd.errors import ConfigError, ListenError, NotRunning, ServiceError, TracesdError
from tracesd.git.context import use_pidfd_child_watcher
from tracesd.store import takeover

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
#: the server's database when --db is not given (a SQLite path or a PostgreSQL URL)
SERVER_DB_ENV = "TRACESD_SERVER_DB"

log = structlog.get_logger("tracesd.cli")

Command = Callable[[Config, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.log_level:
        overrides["log.level"] = args.log_level
    if args.log_format:
        overrides["log.format"] = args.log_format
    if args.socket:
        overrides["status.socket_path"] = args.socket
    try:
        config = load_config(config_path=args.config, overrides=overrides)
    except ConfigError as exc:
        terminal.show(f"tracesd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = config.log.level
    if args.command not in ("run", "server") and not args.log_level:
        level = "warning"  # one-shot commands print their result, not a narrative
    logs.configure(level, config.log.format)
    command: Command = args.func
    try:
        return command(config, args)
    except NotRunning as exc:
        terminal.show(
            f"tracesd: {exc}; start it with `tracesd run` or `tracesd service install`",
            file=sys.stderr,
        )
        return EXIT_NOT_RUNNING
    except ConfigError as exc:  # found while starting, e.g. a socket path too long
        terminal.show(f"tracesd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TracesdError as exc:  # the database, another daemon already running, ...
        terminal.show(f"tracesd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracesd",
        description="Capture every coding-agent session with its git context.",
    )
    parser.add_argument("--version", action="version", version=f"tracesd {__version__}")
    _add_common(parser, default=None)
    # The same options after the command name (`tracesd run --config P`); SUPPRESS keeps
    # an option given before the command from being reset by the subparser's default.
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="the daemon, in the foreground")
    run.set_defaults(func=_run)

    scan = sub.add_parser(
        "scan", parents=[common], help="index every existing session once, then exit"
    )
    scan.add_argument("--json", action="store_true", help="print one JSON document")
    scan.set_defaults(func=_scan)

    lst = sub.add_parser(
        "list", parents=[common], help="traces from the local database, newest first"
    )
    lst.add_argument("--json", action="store_true", help="print one JSON document")
    lst.add_argument("--limit", type=_positive, default=50, metavar="N")
    lst.add_argument("--agent", choices=AGENT_IDS, metavar="ID")
    lst.add_argument("--repo", metavar="URL", help="repository URL, in any form (https, ssh, scp)")
    lst.add_argument("--dir", metavar="PATH", help="working directory, and everything below it")
    lst.set_defaults(func=_list)

    server = sub.add_parser(
        "server",
        parents=[common],
        help="the reference Traces API server (tokens from $TRACESD_SERVER_TOKENS)",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8787, help="port (default: 8787; 0: any)")
    server.add_argument(
        "--db",
        metavar="PATH|URL",
        help="a SQLite file or a postgresql:// URL (default: $TRACESD_SERVER_DB,"
        " else $XDG_DATA_HOME/tracesd/server.db)",
    )
    server.add_argument(
        "--no-auth", action="store_true", help="accept requests without a token (loopback only)"
    )
    server.set_defaults(func=_server)

    status = sub.add_parser("status", parents=[common], help="what the running daemon is doing")
    status.add_argument("--json", action="store_true", help="print GET /status as it is")
    status.set_defaults(func=_status)

    sync = sub.add_parser("sync", parents=[common], help="ask the running daemon to sync now")
    sync.add_argument("--json", action="store_true", help="print one JSON document")
    sync.set_defaults(func=_sync)

    doctor = sub.add_parser("doctor", parents=[common], help="what is wrong, and how to fix it")
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    doctor.set_defaults(func=_doctor)

    service = sub.add_parser(
        "service",
        parents=[common],
        help="run tracesd at login: systemd user unit (Linux) or LaunchAgent (macOS)",
    )
    service.add_argument("action", choices=("install", "uninstall", "status"))
    service.add_argument(
        "--dry-run", action="store_true", help="print the file and the commands; touch nothing"
    )
    service.set_defaults(func=_service)
    return parser


def _add_common(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="config file (default: $TRACESD_CONFIG, else $XDG_CONFIG_HOME/tracesd/config.toml)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=default
    )
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default=default)
    parser.add_argument(
        "--socket", metavar="PATH", default=default, help="the daemon's status socket"
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -------------------------------------------------------------------------- commands


def _run(config: Config, args: argparse.Namespace) -> int:
    from tracesd.daemon import Daemon  # the watcher (watchdog) is the daemon's alone

    private.restrict_umask()  # it writes prompts: every file it creates is owner-only
    return asyncio.run(Daemon(config).serve())


def _server(config: Config, args: argparse.Namespace) -> int:
    from tracesd.server.run import serve  # aiohttp's server side is its alone

    try:
        return asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                db=_server_db(config, args.db),
                tokens=config.server.tokens,
                no_auth=args.no_auth,
            )
        )
    except ConfigError as exc:
        terminal.show(f"tracesd server: refusing to start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as exc:
        terminal.show(f"tracesd server: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _server_db(config: Config, flag: str | None) -> str:
    """The server's database: --db, else $TRACESD_SERVER_DB, else the default file; a path
    gets `~` and `$VAR` expanded, a PostgreSQL URL is taken as it is."""
    from tracesd.server.storage import engine_of

    target = flag or config.environ.get(SERVER_DB_ENV, "").strip()
    if not target:
        return str(config.server.db_path)
    return target if engine_of(target) == "postgresql" else str(config.expand(target))


def _service(config: Config, args: argparse.Namespace) -> int:
    from tracesd.service import install as svc

    try:
        service = svc.service_for(config)
        if args.action == "install":
            for note in service.notes:
                terminal.show(f"tracesd service: note: {note}", file=sys.stderr)
        if args.dry_run:
            terminal.show(svc.describe(service.steps(args.action)).removesuffix("\n"))
            return EXIT_OK
        if args.action == "install":
            svc.install(service)
            terminal.show(f"installed {service.path}; {service.name} is enabled and started")
            terminal.show(f"logs: {service.logs}")
        elif args.action == "uninstall":
            if svc.uninstall(service):
                terminal.show(f"removed {service.path}; {service.name} is stopped and disabled")
            else:
                terminal.show(f"not installed (no {service.path})")
        else:
            text, running = svc.status(service)
            terminal.show(text)
            if not service.path.exists():
                terminal.show(f"not installed (no {service.path}): run `tracesd service install`")
            return EXIT_OK if running else EXIT_NOT_RUNNING
    except ServiceError as exc:
        terminal.show(f"tracesd service: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _scan(config: Config, args: argparse.Namespace) -> int:
    private.restrict_umask()
    report = asyncio.run(scan_once(config))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        terminal.show(
            f"discovered {report.discovered} session files: {report.indexed} indexed "
            f"({report.new} new, {report.updated} updated, {report.unchanged} unchanged), "
            f"{report.errors} errors, {report.skipped} skipped, in {report.duration_s:.2f}s"
        )
    return EXIT_OK


async def scan_once(config: Config) -> Report:
    """Discover and index everything on disk once (what `tracesd scan` does)."""
    use_pidfd_child_watcher()
    async with App.open(config, COMMAND) as app:
        report = await app.scan("command")
        await app.bridge.once()  # the Traces CLI's database, if any: fill it in
        return report


def _list(config: Config, args: argparse.Namespace) -> int:
    takeover.take_over(config.storage.legacy_path, config.storage.db_path)
    directory = os.path.abspath(os.path.expanduser(args.dir)) if args.dir else None
    query = listing.Query(agent=args.agent, repo=args.repo, directory=directory, limit=args.limit)
    found = asyncio.run(listing.find(config, query))
    if args.json:
        print(listing.as_json(found))
    elif not found.traces:
        terminal.show("no traces", file=sys.stderr)
    else:
        terminal.show("\n".join(listing.table(found)))
    return EXIT_OK


def _status(config: Config, args: argparse.Namespace) -> int:
    from tracesd.status import text, wire
    from tracesd.status.socket import request  # aiohttp: not loaded by `scan` and `list`

    answer = asyncio.run(request(config.status.socket_path, "GET", "/status"))
    if args.json:
        print(json.dumps(answer))
    else:
        terminal.show("\n".join(text.status(wire.parse(answer))))
    return EXIT_OK


def _sync(config: Config, args: argparse.Namespace) -> int:
    if not config.sync.enabled and not args.json:
        terminal.show("tracesd: sync is off: set [sync] api_url in the config", file=sys.stderr)
        return EXIT_USAGE
    from tracesd.status.socket import request

    answer = asyncio.run(request(config.status.socket_path, "POST", "/sync", timeout_s=600))
    if args.json:
        print(json.dumps(answer))
    else:
        terminal.show(
            f"sent {answer['sent']}: {answer['succeeded']} stored, {answer['failed']} refused;"
            f" {answer['pending']} still pending"
        )
    return EXIT_OK


def _doctor(config: Config, args: argparse.Namespace) -> int:
    checks = doctor.run(config)
    if args.json:
        print(json.dumps(doctor.as_json(checks)))
    else:
        terminal.show("\n".join(doctor.as_text(checks)))
    return EXIT_OK if doctor.as_json(checks)["ok"] else EXIT_FAILURE
