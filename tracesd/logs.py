"""Logging: structlog events, rendered for a console on a TTY and as JSON lines otherwise.

Every log line goes to stderr (journald and launchd capture it; stdout stays free for
`--json` output). Events have stable dotted names (`ingest.captured`, `watcher.overflow`)
and fields, not prose. Records from the standard library's loggers (watchdog, asyncio,
aiosqlite) are rendered the same way.

The console format is for a terminal: every field of every line (the event, each value,
the traceback) goes through `terminal` first, so an escape sequence in a trace id, a
path or a server's error text is shown as `\\x1b`, never obeyed. JSON lines need no such
step: `json.dumps` escapes every control and non-ASCII character (`\\u001b`).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

from tracesd import terminal

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    last: list[structlog.types.Processor] = []
    if console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        # Tracebacks as text first, so that they are made safe with the rest.
        last = [structlog.processors.format_exc_info, terminal_safe]
    else:
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks as data, without the frames' local variables: a request's headers
        # (the API key) or a remote URL with its credentials must never reach the log.
        shared.append(
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *last,
                renderer,
            ],
        )
    )
    handler.setLevel(_LEVELS[level])
    logging.captureWarnings(True)  # Python warnings become log lines too
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS[level])
    # Libraries that are chatty at debug level stay at info unless asked otherwise.
    for name in ("aiosqlite", "asyncio", "watchdog"):
        logging.getLogger(name).setLevel(max(_LEVELS[level], logging.INFO))


def terminal_safe(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Every field made safe for a terminal: strings and the strings inside containers
    escaped, other objects as their escaped text; tracebacks keep their newlines."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if key in ("exception", "stack") and isinstance(value, str):
            out[key] = terminal.text(value)
        elif value is None or isinstance(value, bool | int | float | str | list | tuple | dict):
            out[terminal.escape(key)] = terminal.value(value)
        else:
            out[terminal.escape(key)] = terminal.escape(str(value))
    return out
