from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultserver import ThreadedFaultServer
from tests.helpers import AGENT_ENV_PREFIXES, Daemon, ServerProcess, isolated_env, runtime_dir
from tests.pgserver import PgServer
from tracesd.config import Config, load_config
from tracesd.store.database import Store


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    path.mkdir()
    yield path
    shutil.rmtree(runtime_dir(path), ignore_errors=True)


@pytest.fixture
def make_config(home: Path) -> Callable[..., Config]:
    """Config for an isolated HOME; keyword arguments are dotted-key overrides."""

    def make(environ: dict[str, str] | None = None, **overrides: Any) -> Config:
        extra = environ or {}
        # A HOME of its own brings the XDG directories along (every path points into it).
        env = isolated_env(Path(extra["HOME"]) if "HOME" in extra else home, **extra)
        dotted = {k.replace("__", "."): v for k, v in overrides.items()}
        return load_config(environ=env, overrides=dotted)

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "db" / "traces.db")
    yield store
    await store.close()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Start real `tracesd run` processes; every one is killed at the end of the test."""
    started: list[Daemon] = []

    def start(home: Path, *args: str, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(home, *args, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerProcess]]:
    """Start real `tracesd server` processes (their home made if missing); every one is
    killed at the end of the test."""
    started: list[ServerProcess] = []

    def start(home: Path, *args: str, env: dict[str, str]) -> ServerProcess:
        home.mkdir(parents=True, exist_ok=True)
        server = ServerProcess(home, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(autouse=True)
def _no_inherited_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own agent directories."""
    for name in list(os.environ):
        if name.startswith(AGENT_ENV_PREFIXES):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One real PostgreSQL 16 (pgserver's wheel) for this pytest worker, stopped at the end."""
    server = PgServer(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the worker's PostgreSQL: its URL."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a server test's storage lives, once per engine: a SQLite file path (not yet
    created) or the URL of a PostgreSQL database, migrated and empty (a test of migrating
    one takes `pg_url`)."""
    if request.param == "sqlite":
        return str(tmp_path / "server" / "server.db")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.emptied_database()


@pytest.fixture
def fault() -> Iterator[ThreadedFaultServer]:
    """A Traces API on 127.0.0.1 that can be told to fail (tests/faultserver.py)."""
    server = ThreadedFaultServer()
    yield server
    server.close()
