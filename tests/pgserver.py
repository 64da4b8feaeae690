"""A real PostgreSQL for tests: pgserver's wheel (PostgreSQL 16), no system package.

`PgServer(dir)` starts one on a data directory under `dir` (a Unix socket in it, no TCP
port); `new_database()` makes an empty database and answers its URL, so tests sharing the
server stay independent; `emptied_database()` answers one database with the server's
schema, migrated once and emptied on every call (a CREATE DATABASE, even from a migrated
template, takes 100-300 ms on a busy machine; emptying one, 30-45); `stop()` and `start()`
stop and start the server again on the same data.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

_NAMES = itertools.count(1)
# pgserver logs its start and stop at info, the last line from an atexit hook after pytest
# closed the streams it captured ("--- Logging error ---" at the end of every run)
logging.getLogger("pgserver").setLevel(logging.WARNING)


class PgServer:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self._server: Any = None
        #: the name of the database emptied_database() answers, once it made it
        self._emptied: str | None = None
        self.start()

    def start(self) -> None:
        with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR not set
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server  # (its import: the warning)

            self._server = get_server(self.data, cleanup_mode="stop")

    def stop(self) -> None:
        if self._server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.cleanup()
            self._server = None

    @property
    def url(self) -> str:
        """postgresql://postgres:@/postgres?host=<socket dir>"""
        if self._server is None:
            raise RuntimeError("the test PostgreSQL is stopped")
        return str(self._server.get_uri())

    def url_of(self, database: str) -> str:
        return self.url.replace("@/postgres?", f"@/{database}?", 1)

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_NAMES)}"
        self._server.psql(f"CREATE DATABASE {name};")
        return self.url_of(name)

    def emptied_database(self) -> str:
        """The URL of a database with the server's schema (as `open_storage` leaves it) and
        no rows, its sequences restarted: the same database on every call, so a test must
        have closed what it opened on it before the next one starts (fixtures do). Call it
        outside a running event loop (from a sync fixture)."""
        if self._emptied is None:
            url = self.new_database()
            asyncio.run(_migrate(url))
            self._emptied = url.partition("@/")[2].partition("?")[0]
        else:
            self._server.psql(
                f"\\set ON_ERROR_STOP on\n\\c {self._emptied}\nSET lock_timeout = '10s';\n"
                "TRUNCATE traces, messages, parts RESTART IDENTITY CASCADE;"
            )
        return self.url_of(self._emptied)


async def _migrate(url: str) -> None:
    from tracesd.server.storage import open_storage

    storage = await open_storage(url)
    await storage.close()


async def table_rows(target: str, *tables: str) -> list[int]:
    """How many rows each table of a server's storage holds (a SQLite path or a URL)."""
    if not target.startswith("postgresql://"):
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as conn:
            return [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
    import asyncpg

    pg = await asyncpg.connect(target)
    try:
        return [int(await pg.fetchval(f"SELECT count(*) FROM {t}")) for t in tables]
    finally:
        await pg.close()
