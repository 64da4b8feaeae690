"""The client against the Traces API as the hosted service and the real CLI speak it (issue
12): enveloped answers (and the bare shape of older tracesd servers), the 429 hint in the
body, no batch endpoint (one PUT per trace), and `[sync] scope`. Real aiohttp servers on
127.0.0.1, real SQLite."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faultserver import FaultServer
from tests.test_sync import SHA, check_against_the_api, trace
from tracesd.config import Config
from tracesd.errors import MalformedAnswer
from tracesd.store.database import Store
from tracesd.store.outbox import Outbox
from tracesd.sync.answers import batch_results, error_message, retry_at
from tracesd.sync.client import BackendClient, open_session
from tracesd.sync.job import SyncService
from tracesd.sync.wire import NotNow, Outgoing

SENT = ["t-1", "t-2"]
RESULTS = [{"externalId": "t-1", "status": 200}, {"externalId": "t-2", "status": 422}]
SHARED_URL = "https://www.traces.com/s/jx7abc"


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "document",
    [
        {"ok": True, "data": {"results": RESULTS}},
        {"ok": False, "data": {"results": RESULTS}},  # `ok` is not checked on a 2xx (the CLI)
        {"results": RESULTS},  # a tracesd server from before the envelope
    ],
    ids=["envelope", "envelope-ok-false", "legacy-bare"],
)
def test_a_batch_answer_is_read_in_the_envelope_or_the_legacy_bare_shape(
    document: dict[str, Any],
) -> None:
    results = batch_results(SENT, _body(document))
    assert [(r.external_id, r.status) for r in results] == [("t-1", 200), ("t-2", 422)]


@pytest.mark.parametrize(
    "document",
    [
        {"ok": True, "data": None},
        {"ok": True, "data": [RESULTS]},
        {"ok": True, "data": {}},
        {"ok": True, "data": {"trace": {"id": "x"}}},
        {"ok": True, "data": {"results": RESULTS[:1]}},
        {"ok": True, "data": "results"},
        {"ok": True, "data": 1, "results": RESULTS},  # data it is, and it is no object
        {"ok": True},
    ],
)
def test_a_malformed_envelope_is_a_malformed_answer(document: dict[str, Any]) -> None:
    with pytest.raises(MalformedAnswer):
        batch_results(SENT, _body(document))


def test_an_enveloped_error_is_shown_with_its_details_as_the_cli_shows_them() -> None:
    error = {"code": "INVALID", "message": "bad field", "details": {"field": "title"}}
    shown = error_message(_body({"ok": False, "error": error}), 422)
    assert shown == 'INVALID: bad field \u2014 {"field": "title"}'
    assert error_message(_body({"error": {"code": "x", "message": "y"}}), 400) == "x: y"


@pytest.mark.parametrize(
    ("retry_at_ms", "hint"),
    [
        (1_000_000_030_000, 30.0),
        (1_000_000_000_500, 0.5),
        (999_999_990_000, 0.0),  # past: now
        (1_000_001_000_000 + 10**9, 900.0),  # far: clamped as Retry-After is
        (1_000_000_030_000.0, 30.0),
        (float("nan"), None),
        (True, None),
        ("1000000030000", None),
        (None, None),
        (10**400, None),
        (-(10**30), None),
    ],
)
def test_retry_at_in_the_error_details_is_a_bounded_hint(retry_at_ms: Any, hint: float) -> None:
    """`error.details.retryAt` is epoch ms (the CLI reads it; never Retry-After)."""
    text = json.dumps({"ok": False, "error": {"code": "RATE", "details": {"retryAt": 0}}})
    body = text.replace('"retryAt": 0', f'"retryAt": {json.dumps(retry_at_ms)}').encode()
    got = retry_at(body, now=1_000_000_000.0)
    assert got == (None if hint is None else pytest.approx(hint))
    for other in (b"", b"null", b"[]", b'{"error": []}', b'{"error": {"details": 5}}'):
        assert retry_at(other) is None


# ------------------------------------------------------------------ against a server


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[FaultServer, aiohttp.ClientSession]]:
    server = await FaultServer().start()
    session = open_session(timeout=aiohttp.ClientTimeout(total=5))
    yield server, session
    await session.close()
    await server.close()


@pytest.mark.parametrize(
    ("retry_after", "retry_at_in_ms", "low", "high"),
    [
        (None, 4000, 3.0, 4.1),  # the hosted API: the body alone
        ("1", 4000, 3.0, 4.1),  # both: the later
        ("6", 1000, 6.0, 6.0),
        ("soon", 2000, 1.0, 2.1),  # a header that says nothing: the body
    ],
)
async def test_a_429_in_the_envelope_gives_its_retry_at_as_the_hint(
    served: tuple[FaultServer, aiohttp.ClientSession],
    retry_after: str | None,
    retry_at_in_ms: int,
    low: float,
    high: float,
) -> None:
    server, session = served
    plan = server.plan
    plan.hosted, plan.fail_status, plan.fail_next = True, 429, 1
    plan.retry_after, plan.retry_at_in_ms = retry_after, retry_at_in_ms
    client = BackendClient(session, server.url, "trk_key")
    outcome = await client.put(Outgoing.of({"externalId": "t-1", "agentId": "codex"}))
    assert isinstance(outcome, NotNow)
    assert outcome.retry_after is not None
    assert low <= outcome.retry_after <= high
    assert "429" in outcome.message


async def test_doctor_check_answers_200_from_a_hosted_like_server(
    served: tuple[FaultServer, aiohttp.ClientSession],
) -> None:
    server, session = served
    server.plan.hosted = True
    assert await BackendClient(session, server.url, "trk_key").check() == 200


# ---------------------------------------------------------------- sync, in process


@pytest.fixture
async def make_sync(
    make_config: Callable[..., Config],
    tmp_path: Path,
    served: tuple[FaultServer, aiohttp.ClientSession],
) -> AsyncIterator[Callable[..., tuple[SyncService, Outbox, Store]]]:
    server, session = served
    store = await Store.open(tmp_path / "traces.db")
    services: list[SyncService] = []

    def make(**settings: Any) -> tuple[SyncService, Outbox, Store]:
        config = make_config(sync__api_url=server.url, sync__interval_s=60, **settings)
        outbox = Outbox(store, scope=config.sync.scope)
        service = SyncService(
            outbox,
            BackendClient(session, server.url, "trk_key"),
            config.sync,
            min_backoff_s=0.05,
            rng=random.Random(7),
        )
        services.append(service)
        return service, outbox, store

    yield make
    for service in services:
        await service.close(1)
    await store.close()


async def test_a_hosted_like_server_gets_one_put_per_trace_with_the_cli_field_set(
    make_sync: Callable[..., tuple[SyncService, Outbox, Store]],
    served: tuple[FaultServer, aiohttp.ClientSession],
) -> None:
    """No /v1/traces/batch (404, enveloped): the client PUTs each trace, reads the
    enveloped answers as successes, and each body is exactly the CLI's field set: the git
    context alone for a trace the CLI shared, the full set for another (scope "all")."""
    server, _ = served
    server.plan.hosted = True
    sync, outbox, store = make_sync(sync__scope="all")
    await store.upsert(trace("shared", shared_url=SHARED_URL, shared_visibility="public"))
    await store.upsert(trace("local", created_at=1_794_000_000_000, shared_visibility="public"))
    report = await sync.sync_once()
    assert (report.sent, report.succeeded, report.failed, report.pending) == (2, 2, 0, 0)
    assert [(s.method, s.path, s.status) for s in server.seen[:1]] == [
        ("POST", "/v1/traces/batch", 404)
    ]
    puts = {s.path: s.status for s in server.requests("PUT")}
    assert puts == {"/v1/traces/shared": 200, "/v1/traces/local": 200}
    bodies = [json.loads(b) for b in server.bodies if b and b'"traces"' not in b]
    by_id = {r.external_id: r.fields for r in server.received}
    assert by_id["shared"] == {
        "agentId": "claude-code",
        "gitRemoteUrl": "https://github.com/acme/app",
        "gitBranch": "main",
        "gitRef": SHA,
    }
    assert by_id["local"] == {
        "agentId": "claude-code",
        "title": "title of local",
        "projectPath": "/work/app",
        "projectName": "app",
        "sourceCreatedAt": 1_794_000_000_000,
        "gitRemoteUrl": "https://github.com/acme/app",
        "gitBranch": "main",
        "gitRef": SHA,
    }
    assert sorted(map(json.dumps, bodies)) == sorted(map(json.dumps, by_id.values()))
    for external_id, fields in by_id.items():
        check_against_the_api({"externalId": external_id, **fields})
    activity = sync.status(await outbox.overview(), await sync.messages()).activity
    assert activity is not None
    assert activity.mode == "put"


async def test_an_enveloped_batch_answer_from_a_tracesd_server_is_acknowledged(
    make_sync: Callable[..., tuple[SyncService, Outbox, Store]],
    served: tuple[FaultServer, aiohttp.ClientSession],
) -> None:
    server, _ = served
    server.plan.envelope = True
    server.plan.item_status = {"bad": 422}
    sync, outbox, store = make_sync(sync__scope="all")
    for trace_id in ("a", "b", "bad"):
        await store.upsert(trace(trace_id))
    report = await sync.sync_once()
    assert (report.sent, report.succeeded, report.failed) == (3, 2, 1)
    assert [s.path for s in server.seen] == ["/v1/traces/batch"]
    assert (await outbox.counts()).failed == 1


async def test_scope_shared_claims_and_counts_only_the_traces_the_cli_shared(
    make_sync: Callable[..., tuple[SyncService, Outbox, Store]],
    served: tuple[FaultServer, aiohttp.ClientSession],
) -> None:
    """scope "shared" (the default): an unshared trace is never claimed nor counted as
    pending (it would show as pending forever); once shared, it is sent. scope "all":
    every trace."""
    server, _ = served
    sync, outbox, store = make_sync()
    assert sync.status(await outbox.overview(), await sync.messages()).scope == "shared"
    await store.upsert(trace("shared", shared_url=SHARED_URL))
    await store.upsert(trace("local"))
    await store.upsert(trace("bad", shared_url=SHARED_URL))
    server.plan.item_status = {"bad": 422}
    # claimed oldest change first, ties by id: two upserts in one millisecond claim "bad"
    # first, so the order is not what this test is about
    assert sorted(p.trace.id for p in await outbox.claim(10)) == ["bad", "shared"]
    counts = await outbox.counts()
    assert (counts.pending, counts.failed) == (2, 0)

    report = await sync.sync_once()
    assert (report.sent, report.succeeded, report.failed, report.pending) == (2, 1, 1, 0)
    assert set(server.stored) == {"shared"}
    overview = await outbox.overview()
    assert (overview.counts.pending, overview.counts.failed) == (0, 1)
    assert sync.status(overview, await sync.messages()).pending == 0

    # the CLI shares "local": it is claimed, counted and sent
    await store.update("local", shared_url=SHARED_URL + "2")
    assert (await outbox.counts()).pending == 1
    assert (await sync.sync_once()).succeeded == 1
    assert set(server.stored) == {"shared", "local"}

    everything = Outbox(store, scope="all")
    await store.upsert(trace("another"))
    assert [p.trace.id for p in await everything.claim(10)] == ["another"]
    assert (await everything.counts()).pending == 1
    assert (await outbox.counts()).pending == 0


async def test_a_trace_that_becomes_shared_after_it_was_synced_is_pending_again(
    make_sync: Callable[..., tuple[SyncService, Outbox, Store]],
) -> None:
    """A trace the server acknowledged, then shared (again) with the CLI: pending, so its
    git context reaches the trace the CLI created. Needs shared_url among the outbox
    trigger's synced columns (migration 6, the `model` part of issue 12)."""
    _, outbox, store = make_sync(sync__scope="all")
    await store.upsert(trace("t"))
    [claimed] = await outbox.claim(10)
    await outbox.ack([("t", claimed.version)])
    assert (await outbox.counts()).pending == 0
    await store.update("t", shared_url=SHARED_URL)
    assert (await outbox.counts()).pending == 1
