"""Sync against a real aiohttp server on 127.0.0.1 that can be told to fail; real SQLite."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

import tracesd.server
from tests.faultserver import FaultServer
from tracesd.config import Config
from tracesd.models import TRACE_COLUMNS, Trace
from tracesd.server.schema import validate
from tracesd.store.database import Store
from tracesd.store.outbox import Outbox, SyncState
from tracesd.sync.backoff import Backoff
from tracesd.sync.client import BackendClient, open_session
from tracesd.sync.job import SyncService
from tracesd.sync.wire import SYNCED_FIELDS, cli_title, payload, project_name

SHA = "a" * 40
KEY = "sk-test-SECRET-4242"


def trace(id: str, **fields: Any) -> Trace:
    values: dict[str, Any] = {
        "agent_id": "claude-code",
        "title": f"title of {id}",
        "preview": "the latest message",
        "timestamp": 1_795_000_000_000,
        "directory": "/work/app",
        "git_remote_url": "https://github.com/acme/app.git",
        "git_branch": "main",
        "git_ref": SHA,
        **fields,
    }
    return Trace(id=id, **values)


@dataclass
class Rig:
    store: Store
    outbox: Outbox
    server: FaultServer
    session: aiohttp.ClientSession
    make: Callable[..., SyncService]

    async def add(self, *traces: Trace) -> None:
        for t in traces:
            await self.store.upsert(t)


@pytest.fixture
async def rig(make_config: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Rig]:
    server = await FaultServer().start()
    store = await Store.open(tmp_path / "traces.db")
    outbox = Outbox(store, scope="all")
    session = open_session(timeout=aiohttp.ClientTimeout(total=2))
    services: list[SyncService] = []

    def make(**overrides: Any) -> SyncService:
        settings = {
            "sync__api_url": server.url,
            "sync__interval_s": 60,
            "sync__max_backoff_s": 0.4,
            "sync__scope": "all",
            **overrides,
        }
        config = make_config(**{k: v for k, v in settings.items() if k.startswith("sync__")})
        exclude = overrides.get("exclude", ())
        service = SyncService(
            outbox,
            BackendClient(session, config.sync.api_url, overrides.get("key", KEY)),
            config.sync,
            exclude=exclude,
            min_backoff_s=0.05,
            rng=random.Random(7),
            use_batch=overrides.get("use_batch", True),
        )
        services.append(service)
        return service

    yield Rig(store, outbox, server, session, make)
    for service in services:
        await service.close(1)
    await session.close()
    await store.close()
    await server.close()


# --------------------------------------------------------------------------- payloads


#: docs/traces-cli-0.6.31.md (f): every field the real CLI's trace PUT may carry, its type
CLI_PUT_FIELDS: dict[str, type] = {
    "agentId": str,
    "title": str,
    "projectPath": str,
    "projectName": str,
    "model": str,
    "tokenUsage": dict,
    "visibility": str,
    "gitRemoteUrl": str,
    "gitBranch": str,
    "gitRef": str,
    "relatedTo": str,
    "relationshipType": str,
    "sourceCreatedAt": int,
    "targetNamespaceId": str,
}
#: what only the user decides, in the CLI
NEVER_SENT = {"visibility", "targetNamespaceId", "preview", "timestamp"}


def check_against_the_api(item: dict[str, Any]) -> None:
    """A BatchItem is the CLI's PUT field set plus externalId: each value of the CLI's type
    (never null), never a field only the user decides; and it validates against
    openapi.json, which lists every one of them."""
    put = {k: v for k, v in item.items() if k != "externalId"}
    assert isinstance(item["externalId"], str)
    assert set(put) <= set(CLI_PUT_FIELDS), set(put) - set(CLI_PUT_FIELDS)
    assert not set(put) & NEVER_SENT
    for key, value in put.items():
        assert type(value) is CLI_PUT_FIELDS[key], (key, value)
    schema = json.loads((Path(tracesd.server.__file__).parent / "openapi.json").read_text())
    assert set(CLI_PUT_FIELDS) <= set(
        schema["components"]["schemas"]["TraceUpsertRequest"]["properties"]
    )
    validate("BatchItem", item)
    validate("TraceUpsertRequest", put)


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"title": None, "preview": None, "directory": None, "git_branch": None},
        {"git_remote_url": None, "git_branch": None, "git_ref": None, "timestamp": None},
        {"shared_visibility": "public", "agent_id": "gemini-cli"},
        {"title": "x" * 200, "preview": "y" * 500, "directory": "/" + "d" * 4000},
        {"shared_url": "https://www.traces.com/s/abc", "shared_visibility": "public"},
        {"created_at": None, "directory": "/"},
    ],
)
def test_every_payload_the_client_builds_is_the_cli_field_set_and_matches_the_api_document(
    shape: dict[str, Any],
) -> None:
    """Batch items and PUT bodies: the real CLI's fields, validated against openapi.json."""
    for send_titles in (True, False):
        check_against_the_api(payload(trace("t-1", **shape), send_titles=send_titles))


def test_an_unshared_trace_is_sent_with_the_fields_the_cli_sends_for_it() -> None:
    """scope "all": what the real CLI's PUT carries, camelCase, absent when unknown; the
    remote canonical; never preview, timestamp or visibility."""
    item = payload(
        trace(
            "t-1",
            git_branch=None,
            shared_visibility="public",
            directory="/work/app/",
            git_remote_url="git@github.com:acme/app.git",
            created_at=1_794_000_000_000,
        ),
        send_titles=True,
    )
    assert item == {
        "externalId": "t-1",
        "agentId": "claude-code",
        "title": "title of t-1",
        "projectPath": "/work/app/",
        "projectName": "app",
        "sourceCreatedAt": 1_794_000_000_000,
        "gitRemoteUrl": "https://github.com/acme/app",
        "gitRef": SHA,
    }


def test_a_trace_the_cli_shared_is_sent_with_its_git_context_only() -> None:
    """The CLI set title, model, project and start when it shared the trace; the server
    keeps fields left out, so we send only what the CLI never sends from `share`."""
    shared = trace("t-1", shared_url="https://www.traces.com/s/j9", shared_visibility="public")
    for send_titles in (True, False):
        assert payload(shared, send_titles=send_titles) == {
            "externalId": "t-1",
            "agentId": "claude-code",
            "gitRemoteUrl": "https://github.com/acme/app",
            "gitBranch": "main",
            "gitRef": SHA,
        }


def test_send_titles_false_keeps_prompt_text_on_this_machine() -> None:
    item = payload(trace("t-1"), send_titles=False)
    assert "title" not in item
    assert "preview" not in item
    assert item["gitRef"] == SHA
    assert item["projectName"] == "app"


def test_no_payload_ever_carries_a_visibility() -> None:
    for shared_url in (None, "https://www.traces.com/s/x"):
        for visibility in ("public", "private", "direct"):
            for send_titles in (True, False):
                row = trace("t", shared_url=shared_url, shared_visibility=visibility)
                item = payload(row, send_titles=send_titles)
                assert "visibility" not in item
                assert "targetNamespaceId" not in item


def test_what_is_sent_comes_from_the_synced_fields_and_from_no_other_column() -> None:
    """SYNCED_FIELDS is what the outbox's trigger watches (tests/test_migrations.py ties
    them): a change to any other column changes nothing that is sent, so it need not be
    sent again; a change to each synced column changes what is sent."""
    base = trace("t-1", model="claude-sonnet-4-5", created_at=1_794_000_000_000)
    other_value: dict[str, Any] = {
        "agent_id": "codex",
        "title": "another title",
        "preview": "another preview",
        "timestamp": 1,
        "directory": "/else/where",
        "source_path": "/another/file.jsonl",
        "shared_url": "https://www.traces.com/s/other",
        "shared_visibility": "private",
        "git_remote_url": "https://github.com/acme/other",
        "git_branch": "other",
        "git_ref": "b" * 40,
        "created_at": 1,
        "updated_at": 1,
        "model": "another-model",
    }
    assert set(other_value) == set(TRACE_COLUMNS) - {"id"}
    shared = replace(base, shared_url="https://www.traces.com/s/j9")
    for column, value in other_value.items():
        sent = [
            (payload(row, send_titles=t), payload(replace(row, **{column: value}), send_titles=t))
            for row in (base, shared)
            for t in (True, False)
        ]
        changed = any(before != after for before, after in sent)
        assert changed == (column in SYNCED_FIELDS), column


@pytest.mark.parametrize(
    ("title", "sent"),
    [
        ("x" * 100, "x" * 100),
        ("x" * 101, "x" * 97 + "..."),
        ("y" * 198 + "\u2026", "y" * 97 + "..."),  # our stored 200-cut, cut again
        ("\u00e9" * 150, "\u00e9" * 97 + "..."),  # one UTF-16 unit each
        ("a" * 50 + "\U0001f600" * 26, "a" * 50 + "\U0001f600" * 23 + "..."),  # 2 units each
        ("a" * 96 + "\U0001f600" * 3, "a" * 96 + "..."),  # a pair the cut splits: dropped
        ("a" * 98 + "\U0001f600", "a" * 98 + "\U0001f600"),  # exactly 100 units: whole
        ("", None),
        (None, None),
    ],
)
def test_a_title_is_cut_as_the_traces_cli_cuts_one(title: str | None, sent: str | None) -> None:
    """The CLI 0.6.31's rule (`PB` in its binary): `e.length <= 100 ? e :
    e.substring(0, 97) + "..."`, with JavaScript's length (UTF-16 code units)."""
    assert cli_title(title) == sent
    assert payload(trace("t", title=title), send_titles=True).get("title") == sent


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("/work/app", "app"),
        ("/work/app///", "app"),
        ("C:\\Users\\me\\proj\\", "proj"),
        ("relative", "relative"),
        ("/", None),
        ("", None),
        (None, None),
    ],
)
def test_project_name_is_the_directory_last_component_as_the_cli_computes_it(
    directory: str | None, name: str | None
) -> None:
    assert project_name(directory) == name
    assert payload(trace("t", directory=directory), send_titles=True).get("projectName") == name


# ----------------------------------------------------------------------------- outbox


async def test_changes_to_synced_fields_bump_the_version_in_the_same_transaction(rig: Rig) -> None:
    await rig.add(trace("a"))
    [first] = await rig.outbox.claim(10)
    assert first.version == 1
    await rig.store.update("a", source_path="/elsewhere")  # not synced: no new version
    assert (await rig.outbox.claim(10))[0].version == 1
    await rig.store.update("a", title="new title")
    assert (await rig.outbox.claim(10))[0].version == 2


async def test_a_write_by_another_program_is_seen_by_the_outbox(rig: Rig) -> None:
    """The Traces CLI shares the table; triggers catch its writes too."""
    import sqlite3

    await rig.add(trace("a"))
    with sqlite3.connect(rig.store.path) as other:
        other.execute("UPDATE traces SET title = 'edited by the CLI' WHERE id = 'a'")
        other.execute("INSERT INTO traces (id, agent_id) VALUES ('b', 'codex')")
    claimed = {p.trace.id: p.version for p in await rig.outbox.claim(10)}
    assert claimed == {"a": 2, "b": 1}


# -------------------------------------------------------------------------- happy path


async def test_pending_traces_arrive_with_their_git_context_and_are_acknowledged(rig: Rig) -> None:
    await rig.add(*(trace(f"t{i}") for i in range(7)))
    report = await rig.make(sync__batch_size=3).sync_once()
    assert (report.sent, report.succeeded, report.failed, report.pending) == (7, 7, 0, 0)
    assert rig.server.stored["t3"]["gitRef"] == SHA
    assert rig.server.stored["t3"]["gitRemoteUrl"] == "https://github.com/acme/app"
    assert [s.items for s in rig.server.requests()] == [3, 3, 1]
    assert (await rig.outbox.counts()).synced == 7


async def test_a_run_with_nothing_pending_makes_no_request(rig: Rig) -> None:
    sync = rig.make()
    await rig.add(trace("a"))
    await sync.sync_once()
    requests = len(rig.server.seen)
    report = await sync.sync_once()
    assert (report.sent, len(rig.server.seen)) == (0, requests)


async def test_the_api_key_travels_only_in_the_authorization_header(rig: Rig) -> None:
    rig.server.plan.token = KEY
    await rig.add(trace("a"))
    await rig.make().sync_once()
    assert [s.authorization for s in rig.server.seen] == [f"Bearer {KEY}"]


async def test_a_capture_nudges_an_early_run(rig: Rig) -> None:
    """With a 60 s interval, a new trace still arrives within about a second."""
    sync = rig.make()
    await sync.start()
    await asyncio.sleep(1)  # the first run after start finds nothing
    await rig.add(trace("fresh"))
    sync.nudge()
    await asyncio.wait_for(_arrived(rig.server, "fresh"), 3)


# ---------------------------------------------------------------------------- failures


async def test_an_update_during_the_request_is_sent_next_time(rig: Rig) -> None:
    """Race: the version sent is acknowledged, not the version stored meanwhile."""
    await rig.add(trace("a", title="old"))
    sync = rig.make()
    rig.server.plan.hold = asyncio.Event()
    run = asyncio.create_task(sync.sync_once())
    await _until(lambda: rig.server.held > 0)
    await rig.store.update("a", title="new")
    rig.server.plan.hold.set()
    await run
    assert (await rig.outbox.counts()).pending == 1
    await sync.sync_once()
    assert rig.server.stored["a"]["title"] == "new"
    assert (await rig.outbox.counts()).pending == 0


async def test_an_outage_backs_off_within_the_envelope_and_everything_arrives(rig: Rig) -> None:
    """503 for 2 s: attempts follow exponential backoff (no hot loop); then all arrive."""
    await rig.add(*(trace(f"t{i}") for i in range(20)))
    sync = rig.make(sync__interval_s=0.05, sync__max_backoff_s=0.4)
    rig.server.plan.fail_until = time.monotonic() + 2.0
    await sync.start()
    await asyncio.wait_for(_until_stored(rig.server, 20), 10)
    failed = [s for s in rig.server.seen if s.status == 503]
    # full jitter between 0.05 s and min(0.4, 0.05 * 2^n): at least ~the mean gaps
    bound = 2.0 / (0.4 / 2) + math.log2(0.4 / 0.05) + 4
    assert 2 <= len(failed) <= bound
    assert len(rig.server.stored) == 20
    # the server stores before it answers: the client records the success a moment later
    await _until(lambda: sync.state.consecutive_failures == 0)
    assert (await rig.outbox.counts()).pending == 0


async def test_retry_after_is_honoured(rig: Rig) -> None:
    await rig.add(trace("a"))
    sync = rig.make(sync__interval_s=0.05)
    rig.server.plan.fail_status = 429
    rig.server.plan.fail_next = 1
    rig.server.plan.retry_after = "1"
    await sync.start()
    await asyncio.wait_for(_until_stored(rig.server, 1), 5)
    first, second = rig.server.seen[:2]
    assert first.status == 429
    assert second.at - first.at >= 0.95


async def test_retry_after_as_an_http_date_is_honoured(rig: Rig) -> None:
    from email.utils import formatdate

    await rig.add(trace("a"))
    sync = rig.make()
    rig.server.plan.fail_status = 503
    rig.server.plan.fail_next = 1
    rig.server.plan.retry_after = formatdate(time.time() + 3, usegmt=True)
    await sync.sync_once()
    assert sync.state.next_attempt_at is not None
    assert sync.state.next_attempt_at - time.time() > 1.5


async def test_a_refused_key_pauses_sync_without_failing_any_trace(rig: Rig) -> None:
    rig.server.plan.token = "the-right-key"
    await rig.add(trace("a"), trace("b"))
    sync = rig.make()
    with structlog.testing.capture_logs() as logs:
        await sync.sync_once()
    counts = await rig.outbox.counts()
    assert (counts.pending, counts.failed) == (2, 0)
    assert sync.state.auth_paused
    assert sync.state.next_attempt_at is not None
    assert KEY not in repr(logs) + repr(sync.state) + repr(sync)
    fixed = rig.make(key="the-right-key")
    await fixed.sync_once(force=True)
    assert set(rig.server.stored) == {"a", "b"}


async def test_413_splits_the_batch_until_it_fits(rig: Rig) -> None:
    await rig.add(*(trace(f"t{i}") for i in range(30)))
    rig.server.plan.max_items = 8
    report = await rig.make(sync__batch_size=30).sync_once()
    assert (report.succeeded, report.failed) == (30, 0)
    assert max(s.items for s in rig.server.seen if s.status == 200) <= 8


async def test_one_refused_trace_is_isolated_and_later_traces_still_arrive(rig: Rig) -> None:
    await rig.add(*(trace(f"t{i}") for i in range(5)))
    rig.server.plan.item_status["t2"] = 422
    sync = rig.make()
    report = await sync.sync_once()
    assert (report.succeeded, report.failed) == (4, 1)
    assert await rig.outbox.failures() == [("t2", "HTTP 422: refused with 422")]
    await rig.add(trace("later"))
    await sync.sync_once()
    assert "later" in rig.server.stored
    assert "t2" not in rig.server.stored
    # failed until it changes: then it is sent again
    rig.server.plan.item_status.clear()
    await rig.store.update("t2", title="fixed")
    await sync.sync_once()
    assert rig.server.stored["t2"]["title"] == "fixed"
    assert (await rig.outbox.counts()).failed == 0


async def test_the_status_overview_agrees_with_each_separate_read(rig: Rig) -> None:
    """Status reads traces per agent, the counts and the failures in one statement; they
    are the same numbers the separate reads give, failures newest change first."""
    for i in range(6):
        await rig.add(trace(f"t{i}", agent_id="codex" if i % 2 else "claude-code"))
        await asyncio.sleep(0.002)  # distinct change times, so the order is defined
    rig.server.plan.item_status.update({"t1": 422, "t4": 422})
    await rig.make().sync_once()
    await rig.add(trace("late"))

    overview = await rig.outbox.overview()
    assert overview.by_agent == await rig.store.count_by_agent() == {"claude-code": 4, "codex": 3}
    assert overview.counts == await rig.outbox.counts()
    assert (overview.counts.pending, overview.counts.failed, overview.counts.synced) == (1, 2, 4)
    assert [f[0] for f in overview.failures] == ["t4", "t1"]
    assert overview.failures == await rig.outbox.failures()


async def test_a_whole_batch_refused_is_bisected_to_the_culprit(rig: Rig) -> None:
    """A strict server that refuses a batch for one item: the others still arrive."""
    await rig.add(*(trace(f"t{i}") for i in range(16)))
    rig.server.plan.poison_ids = {"t11"}
    report = await rig.make(sync__batch_size=16).sync_once()
    assert (report.succeeded, report.failed) == (15, 1)
    assert set(rig.server.stored) == {f"t{i}" for i in range(16)} - {"t11"}


async def test_without_a_batch_endpoint_each_trace_is_put(rig: Rig) -> None:
    await rig.add(*(trace(f"t{i}") for i in range(12)))
    rig.server.plan.batch_supported = False
    report = await rig.make().sync_once()
    assert report.succeeded == 12
    assert len(rig.server.requests("PUT")) == 12
    assert rig.server.stored["t5"]["gitRef"] == SHA


async def test_a_malformed_answer_is_retried_not_trusted(rig: Rig) -> None:
    await rig.add(trace("a"))
    rig.server.plan.malformed = True
    sync = rig.make()
    await sync.sync_once()
    assert (await rig.outbox.counts()).pending == 1
    assert sync.state.consecutive_failures == 1


async def test_a_hanging_server_is_abandoned_at_the_timeout(rig: Rig) -> None:
    await rig.add(trace("a"))
    rig.server.plan.hang = True
    sync = rig.make()
    started = time.monotonic()
    await sync.sync_once()
    assert time.monotonic() - started < 5
    assert (await rig.outbox.counts()).pending == 1
    assert "timed out" in (sync.state.last_error or "")


async def test_backoff_state_survives_a_restart(rig: Rig) -> None:
    await rig.add(trace("a"))
    rig.server.plan.fail_next = 10
    first = rig.make(sync__max_backoff_s=30)
    await first.sync_once()
    await first.sync_once(force=True)
    again = rig.make(sync__max_backoff_s=30)
    await again.start()
    assert again.state.consecutive_failures == 2
    assert again.state.next_attempt_at == first.state.next_attempt_at
    report = await again.sync_once()
    assert report.skipped


async def test_a_nonsense_saved_state_is_read_as_defaults_and_sync_goes_on(rig: Rig) -> None:
    """A NaN deadline (saved by a version that took `max_backoff_s = nan`, just before it
    crashed) or values of the wrong type do not break the next start, status or run."""
    await rig.add(trace("a"))
    await rig.outbox.save_state(
        next_attempt_at=float("nan"),
        last_success_at=float("inf"),
        consecutive_failures=-3,
        last_error=5,
        auth_paused="yes",
    )
    sync = rig.make()
    await sync.start()
    assert sync.state == SyncState()
    assert (await sync.sync_once()).succeeded == 1


async def test_excluded_directories_are_never_sent(rig: Rig) -> None:
    await rig.add(trace("secret", directory="/home/u/private/x"), trace("fine"))
    await rig.make(exclude=["/home/u/private/**"]).sync_once()
    assert set(rig.server.stored) == {"fine"}
    assert await rig.outbox.failures() == [("secret", "excluded")]


# ----------------------------------------------------------------------------- helpers


async def _until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _until_stored(server: FaultServer, count: int) -> None:
    await _until(lambda: len(server.stored) >= count, timeout=30)


async def _arrived(server: FaultServer, trace_id: str) -> None:
    await _until(lambda: trace_id in server.stored)


async def test_in_put_mode_one_failing_trace_does_not_undo_the_others(rig: Rig) -> None:
    """PUTs that succeeded beside a failed one are acknowledged, not sent again."""
    await rig.add(*(trace(f"t{i}") for i in range(6)))
    rig.server.plan.batch_supported = False
    rig.server.plan.item_status["t3"] = 503
    sync = rig.make()
    report = await sync.sync_once()
    assert report.succeeded == 5
    assert (await rig.outbox.counts()).pending == 1
    assert sync.state.consecutive_failures == 1
    assert not sync.state.auth_paused


async def test_in_put_mode_a_refused_key_still_pauses_for_auth(rig: Rig) -> None:
    await rig.add(trace("a"), trace("b"))
    rig.server.plan.token = "other"
    sync = rig.make(use_batch=False)
    await sync.sync_once()
    assert len(rig.server.requests("PUT")) == 2
    assert sync.state.auth_paused
    assert (await rig.outbox.counts()).failed == 0


async def test_a_not_now_answer_ends_the_run_after_recording_the_batch_already_sent(
    rig: Rig,
) -> None:
    """Batches are pipelined: when one comes back with a retryable item, the one already on
    the wire is still awaited and acknowledged; no further batch is sent."""
    await rig.add(*(trace(f"t{i:02}") for i in range(30)))
    rig.server.plan.item_status["t05"] = 503
    sync = rig.make(sync__batch_size=10)
    report = await sync.sync_once()
    assert (report.sent, report.succeeded) == (20, 19)
    assert sorted(rig.server.stored) == [f"t{i:02}" for i in range(20) if i != 5]
    assert (await rig.outbox.counts()).pending == 11
    assert sync.state.consecutive_failures == 1
    assert [s.items for s in rig.server.seen] == [10, 10]


class _BuggyOnce(BackendClient):
    """A client with a bug that one answer trips: it raises a foreign exception once."""

    tripped = False

    async def send_batch(self, items: list[Any]) -> Any:
        if not self.tripped:
            self.tripped = True
            raise OverflowError("cannot convert float infinity to integer")
        return await super().send_batch(items)


async def test_a_bug_in_the_client_costs_a_backoff_not_the_daemon(
    rig: Rig, make_config: Callable[..., Config]
) -> None:
    """Should an answer get past the parser and trip the client, the run backs off and says
    so; the crash hook (which stops the daemon) is not called, and the next run delivers."""
    crashed: list[BaseException] = []
    config = make_config(sync__api_url=rig.server.url, sync__max_backoff_s=0.2, sync__scope="all")
    sync = SyncService(
        rig.outbox,
        _BuggyOnce(rig.session, rig.server.url, KEY),
        config.sync,
        min_backoff_s=0.05,
        rng=random.Random(7),
        on_crash=crashed.append,
    )
    await rig.add(trace("a"))
    with structlog.testing.capture_logs() as logs:
        report = await sync.sync_once()
    assert report.succeeded == 0
    assert sync.state.last_error == "unexpected error in the client: OverflowError"
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["sync.client_error"]
    await sync.sync_once(force=True)
    assert "a" in rig.server.stored
    assert not crashed


@pytest.mark.parametrize("failures", [0, 1, 10, 1023, 1024, 5000, 10**9])
def test_any_number_of_failures_in_a_row_gives_a_delay_within_the_bounds(failures: int) -> None:
    """The count survives restarts: a long outage must not make the next delay overflow."""
    backoff = Backoff(0.05, 60.0, random.Random(failures))
    delay = backoff.fail(failures)
    assert 0.05 <= delay <= 60.0
    assert backoff.fail(failures, retry_after=float("nan")) <= 60.0
