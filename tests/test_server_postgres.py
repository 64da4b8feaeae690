"""The server on PostgreSQL, where it differs from one SQLite file: several writers (pools,
processes) on one database, a database that goes away and comes back, migrations raced
by servers starting together, credentials in the URL. (The API itself runs on both
engines in test_server.py and test_server_messages.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
import structlog.testing
from aiohttp import web

from tests.helpers import ServerProcess, isolated_env
from tests.pgserver import PgServer
from tests.test_server import OTHER_TOKEN, TOKEN, Api, item, trace
from tracesd.errors import StoreError
from tracesd.server.app import make_app
from tracesd.server.postgres_layout import SCHEMA_VERSION
from tracesd.server.storage import Storage, open_storage, redacted

PASSWORD = "s3cret-Pw"  # pgserver trusts local connections: any password is accepted


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Storage], Any]]:
    """Serve a storage on 127.0.0.1 (port 0); each is cleaned up at the end of the test."""
    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def start(storage: Storage) -> Api:
        runner = web.AppRunner(make_app(storage, tokens=(TOKEN,)), access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return Api(session, f"http://{host}:{port}")

    yield start
    await session.close()
    for runner in runners:
        await runner.cleanup()


async def test_a_stopped_database_answers_503_with_retry_after_and_the_server_recovers(
    tmp_path: Path, serve: Callable[[Storage], Any]
) -> None:
    """PostgreSQL stopped: every route answers 503 `unavailable` with Retry-After; started
    again, the same server (same pool) answers 200 and has kept what it acknowledged."""
    own = PgServer(tmp_path)  # its own PostgreSQL: this test stops it
    try:
        storage = await open_storage(own.new_database())
        try:
            api = await serve(storage)
            assert (await api.put("t1", trace())).status == 200
            own.stop()
            with structlog.testing.capture_logs() as logs:
                answers = [await api.put("t2", trace()), await api.get("t1")]
            for answer in answers:
                assert (answer.status, answer.body["error"]["code"]) == (503, "unavailable")
                assert answer.headers["Retry-After"] == "1"
            busy = [e for e in logs if e["event"] == "server.store_busy"]
            assert len(busy) == 2
            assert all("database" in e["error"] for e in busy)  # why, for the operator
            own.start()
            deadline = time.monotonic() + 30
            while (answer := await api.put("t2", trace())).status != 200:
                assert answer.status == 503, answer.body
                assert time.monotonic() < deadline, "the server did not recover"
                await asyncio.sleep(0.1)
            assert (await api.get("t1")).status == 200
            assert [t["externalId"] for t in await api.every_trace()] == ["t2", "t1"]
        finally:
            await storage.close()
    finally:
        own.stop()


async def test_concurrent_writers_on_one_database_keep_the_fields_each_left_out(
    pg_url: str,
) -> None:
    """Two servers (two pools) write each trace at the same moment, one only its title, the
    other only its preview: first creating it, then changing it. Every trace ends with
    both fields, one createdAt, updatedAt past it, and answers that match the store. A
    merge on a stale read (a lost update) or an insert that lost the race unnoticed would
    leave one writer's field behind."""
    first, second = await open_storage(pg_url), await open_storage(pg_url)
    ids = [f"t{i}" for i in range(40)]

    async def both(external_id: str, n: int) -> None:
        sent = [({"title": f"title-{n}"}, first), ({"preview": f"preview-{n}"}, second)]
        await asyncio.gather(
            *(s.upsert_many([{"externalId": external_id, "agentId": "a", **f}]) for f, s in sent)
        )

    try:
        for n in range(3):
            await asyncio.gather(*(both(external_id, n) for external_id in ids))
            for external_id in ids:
                stored = await second.get(external_id)
                assert stored is not None
                assert (stored["title"], stored["preview"]) == (f"title-{n}", f"preview-{n}")
                assert stored["updatedAt"] > stored["createdAt"]
        page = await first.list_traces(limit=100)
        assert sorted(d["externalId"] for d in page.traces) == sorted(ids)
    finally:
        await first.close()
        await second.close()


async def test_servers_starting_at_the_same_moment_migrate_once(pg_url: str) -> None:
    """Five servers open one new database at once: the schema is created once (the
    advisory lock), each version recorded once, and every server works."""
    storages = await asyncio.gather(*(open_storage(pg_url) for _ in range(5)))
    try:
        conn = await asyncpg.connect(pg_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
        finally:
            await conn.close()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        for n, storage in enumerate(storages):
            assert (await storage.upsert_many([item(f"t{n}")]))[0] is not None
        assert len((await storages[0].list_traces()).traces) == len(storages)
    finally:
        for storage in storages:
            await storage.close()


def test_a_url_is_shown_without_its_password() -> None:
    """The password (in the user info or a query parameter) is dropped; the rest stays."""
    cases = {
        f"postgresql://app:{PASSWORD}@db.example:5432/traces": "postgresql://app@db.example:5432/traces",
        f"postgres://app:{PASSWORD}@/traces?host=/run/pg&sslmode=require": (
            "postgres://app@/traces?host=/run/pg&sslmode=require"
        ),
        f"postgresql:///traces?user=app&password={PASSWORD}": "postgresql:///traces?user=app",
        "postgresql://app@db/traces": "postgresql://app@db/traces",
        "/var/lib/tracesd/server.db": "/var/lib/tracesd/server.db",
    }
    for url, shown in cases.items():
        assert redacted(url) == shown


async def test_an_unreachable_database_is_busy_and_its_message_holds_no_password(
    tmp_path: Path,
) -> None:
    """Nothing listens at the URL: StoreError(busy) naming the URL without its password."""
    url = f"postgresql://app:{PASSWORD}@/traces?host={tmp_path}"
    with pytest.raises(StoreError) as raised:
        await open_storage(url)
    assert raised.value.busy
    assert PASSWORD not in str(raised.value)
    assert f"postgresql://app@/traces?host={tmp_path}" in str(raised.value)


# ----------------------------------------------------------------- real processes


def test_two_server_processes_share_one_database_and_a_killed_one_loses_no_acknowledged_write(
    tmp_path: Path, pg_url: str, servers: Callable[..., ServerProcess]
) -> None:
    """`--db URL` on one and TRACESD_SERVER_DB on the other: both start on PostgreSQL,
    log the URL without its password, and serve the same traces; clients write through both
    at once while a reader pages through one of them (every trace there before the first page
    comes once); after kill -9 of one, every write it acknowledged is there through the
    other, and paging through the survivor yields every trace once."""
    url = pg_url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    env = {"TRACESD_SERVER_TOKENS": f"{TOKEN},{OTHER_TOKEN}"}
    homes = tmp_path / "one" / "home", tmp_path / "two" / "home"
    one = servers(homes[0], "--port", "0", "--db", url, env=isolated_env(homes[0], **env))
    two = servers(homes[1], "--port", "0", env=isolated_env(homes[1], TRACESD_SERVER_DB=url, **env))
    ports = [one.wait_started(), two.wait_started()]
    for server in (one, two):
        started = server.events("server.started")[0]
        assert (started["engine"], started["db"]) == ("postgresql", redacted(url))
        assert PASSWORD not in server.log_path.read_text()

    async def clients() -> tuple[list[str], list[str]]:
        acknowledged: list[list[str]] = [[], []]
        some_written = asyncio.Event()

        async def client(n: int, port: int) -> None:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                api = Api(session, "")
                for k in range(15):
                    batch = [item(f"c{n}-{k}-{j}", title=f"from {port}") for j in range(5)]
                    answer = await api.batch(batch)
                    assert answer.status == 200, answer.body
                    acknowledged[n % 2] += [i["externalId"] for i in batch]
                    if sum(map(len, acknowledged)) >= 40:
                        some_written.set()
                    shared = await api.put(
                        "shared",
                        {"agentId": "claude-code", f"{'title' if n % 2 else 'preview'}": str(k)},
                    )
                    assert shared.status == 200

        async def pager() -> None:
            """Pages through one process while clients write through both: every trace
            acknowledged before the first page comes once, none twice."""
            await some_written.wait()
            before = {*acknowledged[0], *acknowledged[1]}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{ports[1]}") as session:
                paged = [t["externalId"] for t in await Api(session, "").every_trace(limit="3")]
            assert len(paged) == len(set(paged))
            assert before <= set(paged)

        await asyncio.gather(pager(), *(client(n, ports[n % 2]) for n in range(4)))
        return acknowledged[0], acknowledged[1]

    through_one, through_two = asyncio.run(clients())
    one.proc.kill()  # SIGKILL: no shutdown, no flush
    one.proc.wait(10)

    async def survivor() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports[1]}") as session:
            return await Api(session, "").every_trace(limit="7")

    found = asyncio.run(survivor())
    names = [t["externalId"] for t in found]
    assert len(names) == len(set(names))  # every trace once
    assert set(names) == {*through_one, *through_two, "shared"}
    (shared,) = (t for t in found if t["externalId"] == "shared")
    assert (shared["title"], shared["preview"]) == ("14", "14")
