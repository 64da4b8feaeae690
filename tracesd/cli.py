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
from datetime import datetime
from typing import Any

import structlog

from tracesd import __version__, logs
from tracesd.adapters import Hints, build_adapters
from tracesd.config import Config, load_config
from tracesd.dispatch import Dispatcher
from tracesd.errors import ConfigError, ListenError, StoreError
from tracesd.gitinfo import GitResolver, use_pidfd_child_watcher
from tracesd.ingest import Ingestor
from tracesd.models import AGENT_IDS, Trace
from tracesd.scan import Report, Scanner
from tracesd.store import Store

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

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
    try:
        config = load_config(config_path=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"tracesd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = config.log.level
    if args.command not in ("run", "server") and not args.log_level:
        level = "warning"  # one-shot commands print their result, not a narrative
    logs.configure(level, config.log.format)
    command: Command = args.func
    try:
        return command(config, args)
    except StoreError as exc:
        print(f"tracesd: {exc}", file=sys.stderr)
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
    lst.add_argument("--repo", metavar="URL", help="git remote URL (with or without .git)")
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
        "--db", metavar="PATH", help="database (default: $XDG_DATA_HOME/tracesd/server.db)"
    )
    server.add_argument(
        "--no-auth", action="store_true", help="accept requests without a token (loopback only)"
    )
    server.set_defaults(func=_server)
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

    return asyncio.run(Daemon(config).serve())


def _server(config: Config, args: argparse.Namespace) -> int:
    from tracesd.server.run import serve  # aiohttp's server side is its alone

    db_path = config.expand(args.db) if args.db else config.server.db_path
    try:
        return asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                db_path=db_path,
                tokens=config.server.tokens,
                no_auth=args.no_auth,
            )
        )
    except ConfigError as exc:
        print(f"tracesd server: refusing to start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as exc:
        print(f"tracesd server: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _scan(config: Config, args: argparse.Namespace) -> int:
    report = asyncio.run(scan_once(config))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(
            f"discovered {report.discovered} sessions: {report.indexed} indexed "
            f"({report.new} new, {report.updated} updated, {report.unchanged} unchanged), "
            f"{report.errors} errors, {report.skipped} skipped, in {report.duration_s:.2f}s"
        )
    return EXIT_OK


async def scan_once(config: Config) -> Report:
    """Discover and index everything on disk once (what `tracesd scan` does)."""
    use_pidfd_child_watcher()
    store = await Store.open(config.storage.db_path)
    try:
        git = GitResolver(timeout_s=config.capture.git_timeout_s, environ=config.environ)
        ingestor = Ingestor(
            store, git, exclude=config.capture.exclude, directories=await store.directories()
        )
        adapters = build_adapters(config, Hints(ingestor.known_directories))
        dispatcher = Dispatcher(ingestor.ingest_many, cooldown_s=0.0, workers=8)
        try:
            return await Scanner(adapters, store, ingestor, dispatcher).run(reason="command")
        finally:
            await dispatcher.close(grace_s=5.0)
    finally:
        await store.close()


def _list(config: Config, args: argparse.Namespace) -> int:
    if not config.storage.db_path.exists():
        traces: list[Trace] = []
    else:
        directory = os.path.abspath(os.path.expanduser(args.dir)) if args.dir else None
        traces = asyncio.run(_query(config, args, directory))
    if args.json:
        print(json.dumps({"traces": [t.as_dict() for t in traces]}))
        return EXIT_OK
    if not traces:
        print("no traces", file=sys.stderr)
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("WHEN", "AGENT", "ID", "BRANCH", "REF", "REPOSITORY", "TITLE")]
    rows += [_row(t) for t in traces]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return EXIT_OK


async def _query(config: Config, args: argparse.Namespace, directory: str | None) -> list[Trace]:
    store = await Store.open(config.storage.db_path)
    try:
        return await store.list_traces(
            agent=args.agent, repo=args.repo, directory=directory, limit=args.limit
        )
    finally:
        await store.close()


def _row(trace: Trace) -> tuple[str, ...]:
    when = (
        datetime.fromtimestamp(trace.timestamp / 1000).strftime("%Y-%m-%d %H:%M")
        if trace.timestamp
        else "-"
    )
    repo = trace.git_remote_url or "-"
    for prefix in ("https://", "http://", "ssh://", "git@"):
        repo = repo.removeprefix(prefix)
    title = trace.title or ""
    return (
        when,
        trace.agent_id,
        trace.id[:8],
        trace.git_branch or "-",
        (trace.git_ref or "-")[:12],
        repo,
        title[:80] + ("…" if len(title) > 80 else ""),
    )
