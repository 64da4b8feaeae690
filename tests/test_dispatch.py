"""The dispatcher: immediate for new paths, coalesced while busy, bounded, never lossy."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from tests.fakes import ControlledIngest
from tracesd.capture.adapters import Adapter
from tracesd.capture.debounce import BATCH, KNOWN_MAX, Dispatcher
from tracesd.capture.ingest import Item, Result, Tally
from tracesd.errors import StoreError

ADAPTER = cast(Adapter, object())


async def settle(dispatcher: Dispatcher, timeout: float = 2.0) -> None:
    await asyncio.wait_for(dispatcher.idle(), timeout)


async def test_a_new_path_runs_at_once_without_waiting_for_the_cooldown() -> None:
    ingest = ControlledIngest()
    dispatcher = Dispatcher(ingest, cooldown_s=60)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)  # would time out if the first run waited for the cooldown
    assert ingest.calls["/a"] == 1
    await dispatcher.close(1)


async def test_events_while_running_coalesce_into_one_more_run() -> None:
    """100 events during one run cost one extra run, and the path never runs twice at once."""
    ingest = ControlledIngest(Result())
    ingest.gate.clear()
    dispatcher = Dispatcher(ingest, cooldown_s=0)
    dispatcher.submit(ADAPTER, "/a")
    await asyncio.sleep(0.01)
    for _ in range(100):
        dispatcher.submit(ADAPTER, "/a")
    ingest.gate.set()
    await settle(dispatcher)
    assert ingest.calls["/a"] == 2
    assert ingest.max_running_per_path == 1
    await dispatcher.close(1)


async def test_a_busy_file_is_read_at_most_once_per_cooldown() -> None:
    """After a run that stored something, a burst of events waits out the cooldown once."""
    ingest = ControlledIngest()
    dispatcher = Dispatcher(ingest, cooldown_s=0.2)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    for _ in range(50):
        dispatcher.submit(ADAPTER, "/a")
        await asyncio.sleep(0.001)
    assert ingest.calls["/a"] == 1  # still cooling down
    await settle(dispatcher)
    assert ingest.calls["/a"] == 2
    await dispatcher.close(1)


async def test_a_run_that_found_nothing_does_not_delay_the_next() -> None:
    """An empty file (no trace yet) is read again at once when it changes."""
    ingest = ControlledIngest(Result())
    dispatcher = Dispatcher(ingest, cooldown_s=60)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    assert ingest.calls["/a"] == 2
    await dispatcher.close(1)


async def test_workers_bound_how_many_batches_run_at_once() -> None:
    ingest = ControlledIngest()
    ingest.gate.clear()
    dispatcher = Dispatcher(ingest, workers=3)
    for i in range(20):
        dispatcher.submit(ADAPTER, f"/p{i}")
        await asyncio.sleep(0)  # each idle worker takes what is ready
    await asyncio.sleep(0.05)
    assert ingest.max_active == 3
    ingest.gate.set()
    await settle(dispatcher)
    assert sum(ingest.calls.values()) == 20
    await dispatcher.close(1)


async def test_a_burst_is_ingested_in_batches() -> None:
    """Thousands of ready paths cost batches of at most BATCH, not thousands of calls."""
    ingest = ControlledIngest()
    dispatcher = Dispatcher(ingest, workers=2)
    for i in range(1000):
        dispatcher.submit(ADAPTER, f"/p{i}")
    await settle(dispatcher)
    assert sum(ingest.calls.values()) == 1000
    assert max(len(b) for b in ingest.batches) == BATCH
    assert len(ingest.batches) == 1000 // BATCH + 1


async def test_paths_read_before_that_change_again_share_one_batch_at_the_gather_tick() -> None:
    """200 sessions each appending a line: one batch per gather tick, not one per append."""
    ingest = ControlledIngest(Result(updated=1))
    dispatcher = Dispatcher(ingest, cooldown_s=0, gather_s=0.3, workers=4)
    paths = [f"/s{i}" for i in range(40)]
    for path in paths:  # first reads: each at once
        dispatcher.submit(ADAPTER, path)
        await asyncio.sleep(0)
    await settle(dispatcher)
    first = len(ingest.batches)
    assert first > 1
    started = asyncio.get_running_loop().time()
    for path in paths:  # each changes again, one after the other
        dispatcher.submit(ADAPTER, path)
        await asyncio.sleep(0.001)
    assert dispatcher.pending == len(paths)  # gathered: counted as pending work
    assert len(ingest.batches) == first  # nothing read before the tick
    await settle(dispatcher)
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert ingest.batches[first:] == [paths]
    await dispatcher.close(1)


async def test_a_new_path_never_waits_for_the_gather_tick() -> None:
    ingest = ControlledIngest()
    read_new = asyncio.Event()

    def result_for(path: str) -> Result:
        if path == "/new":
            read_new.set()
        return ingest.result

    ingest.result_for = result_for
    dispatcher = Dispatcher(ingest, cooldown_s=0, gather_s=60)
    dispatcher.submit(ADAPTER, "/old")
    await settle(dispatcher)
    dispatcher.submit(ADAPTER, "/old")  # gathered for a minute
    dispatcher.submit(ADAPTER, "/new")
    await asyncio.wait_for(read_new.wait(), 2)
    assert ingest.calls["/old"] == 1
    await dispatcher.close(1)


@pytest.mark.parametrize("second", ["after_a_read_that_stored_nothing", "for_a_scan"])
async def test_these_reads_never_wait_for_the_gather_tick(second: str) -> None:
    """A session whose first line is still being written is new until a read stores it; a
    scan reads at once whatever it found."""
    ingest = ControlledIngest(Result() if second == "after_a_read_that_stored_nothing" else None)
    dispatcher = Dispatcher(ingest, cooldown_s=0, gather_s=60)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    if second == "for_a_scan":
        dispatcher.submit_scanned(Item(ADAPTER, "/a"), Tally())
    else:
        dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)  # would time out if the second read waited a minute
    assert ingest.calls["/a"] == 2
    await dispatcher.close(1)


async def test_only_the_most_recent_paths_are_remembered_the_oldest_is_read_at_once() -> None:
    ingest = ControlledIngest()
    paths = [f"/p{i}" for i in range(KNOWN_MAX + 1)]
    read_again = asyncio.Event()

    def result_for(path: str) -> Result:
        if path == paths[0] and ingest.calls[path] == 2:
            read_again.set()
        return ingest.result

    ingest.result_for = result_for
    dispatcher = Dispatcher(ingest, cooldown_s=0, gather_s=60)
    for path in paths:
        dispatcher.submit(ADAPTER, path)
    await settle(dispatcher)
    dispatcher.submit(ADAPTER, paths[-1])  # remembered: gathered for a minute
    dispatcher.submit(ADAPTER, paths[0])  # forgotten: read at once
    await asyncio.wait_for(read_again.wait(), 2)
    assert ingest.calls[paths[-1]] == 1
    await dispatcher.close(1)


async def test_close_drops_the_gathered_paths_for_the_next_start_to_find() -> None:
    ingest = ControlledIngest()
    dispatcher = Dispatcher(ingest, cooldown_s=0, gather_s=0.2)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    dispatcher.submit(ADAPTER, "/a")
    await dispatcher.close(1)
    assert dispatcher.pending == 0
    await asyncio.sleep(0.3)
    assert ingest.calls["/a"] == 1  # the tick was cancelled


async def test_a_locked_database_is_retried_until_it_frees(monkeypatch: pytest.MonkeyPatch) -> None:
    """StoreError(busy) is not a failure: the path is retried later, nothing is dropped."""
    monkeypatch.setattr("tracesd.capture.debounce.BUSY_RETRY_MAX_S", 0.05)
    ingest = ControlledIngest()
    ingest.fail_with = lambda path: (
        StoreError("locked", busy=True) if ingest.calls[path] < 3 else None
    )
    dispatcher = Dispatcher(ingest)
    dispatcher.submit(ADAPTER, "/a")
    await settle(dispatcher)
    assert ingest.calls["/a"] == 3
    await dispatcher.close(1)


async def test_a_store_its_agent_holds_locked_is_read_again_without_holding_a_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent's own store that is locked is retried with backoff until it reads; idle()
    (what a scan waits for) does not wait for those retries."""
    monkeypatch.setattr("tracesd.capture.debounce.BUSY_RETRY_MAX_S", 0.05)
    ingest = ControlledIngest()
    ingest.result_for = lambda path: (
        Result(error="locked") if ingest.calls[path] < 3 else Result(captured=1)
    )
    dispatcher = Dispatcher(ingest, cooldown_s=0)
    dispatcher.submit(ADAPTER, "/store.db")
    await settle(dispatcher)
    assert ingest.calls["/store.db"] == 1  # idle while the retry waits
    for _ in range(200):
        if ingest.calls["/store.db"] == 3:
            break
        await asyncio.sleep(0.01)
    assert ingest.calls["/store.db"] == 3
    await settle(dispatcher)
    await asyncio.sleep(0.1)
    assert ingest.calls["/store.db"] == 3  # read at last: no more retries
    await dispatcher.close(1)


async def test_an_unexpected_error_is_reported_as_a_crash() -> None:
    """A bug in ingest is not contained silently: the daemon is told."""
    crashes: list[BaseException] = []
    ingest = ControlledIngest()
    ingest.fail_with = lambda path: RuntimeError("bug")
    dispatcher = Dispatcher(ingest, workers=1, on_crash=crashes.append)
    dispatcher.submit(ADAPTER, "/a")
    await asyncio.sleep(0.05)
    assert [type(e) for e in crashes] == [RuntimeError]
    await dispatcher.close(1)


async def test_close_cancels_runs_that_outlive_the_grace() -> None:
    ingest = ControlledIngest()
    ingest.gate.clear()
    dispatcher = Dispatcher(ingest, workers=2)
    dispatcher.submit(ADAPTER, "/a")
    await asyncio.sleep(0.01)
    await asyncio.wait_for(dispatcher.close(0.05), 2)
    dispatcher.submit(ADAPTER, "/b")  # ignored once closing
    assert ingest.calls == {"/a": 1}


async def test_waiting_for_idle_raises_when_a_worker_died() -> None:
    """`tracesd scan` must fail loudly, not wait forever on work no worker will take."""
    ingest = ControlledIngest()
    ingest.fail_with = lambda path: RuntimeError("bug")
    dispatcher = Dispatcher(ingest, workers=2)
    for i in range(10):
        dispatcher.submit(ADAPTER, f"/p{i}")
    with pytest.raises(RuntimeError, match="bug"):
        await settle(dispatcher)
    await dispatcher.close(1)
