"""The store on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from tracesd.errors import RowRejected, StoreClosed, StoreError
from tracesd.models import Capture, FileStamp, FileState, Trace
from tracesd.store.database import Store


def trace(id: str = "t1", **fields: object) -> Trace:
    values: dict[str, object] = {"agent_id": "claude-code", "timestamp": 1000, **fields}
    return Trace(id=id, **values)  # type: ignore[arg-type]


async def test_git_fields_round_trip(store: Store) -> None:
    """What is upserted is what get() returns, git fields included."""
    stored = trace(git_remote_url="https://github.com/a/b", git_branch="main", git_ref="a" * 40)
    await store.upsert(stored)
    got = await store.get("t1")
    assert got is not None
    assert got.git == stored.git
    assert (got.agent_id, got.timestamp) == ("claude-code", 1000)
    assert got.created_at is not None
    assert got.updated_at is not None


async def test_reupsert_with_null_git_fields_keeps_stored_values(store: Store) -> None:
    """COALESCE(new, old): NULL keeps what is stored, a value replaces it."""
    await store.upsert(trace(git_remote_url="https://h/r", git_branch="main", git_ref="1" * 40))
    await store.upsert(trace(title="later"))
    got = await store.get("t1")
    assert got is not None
    assert (got.git_remote_url, got.git_branch, got.git_ref) == (
        "https://h/r",
        "main",
        "1" * 40,
    )
    assert got.title == "later"

    await store.upsert(trace(git_branch="dev"))
    got = await store.get("t1")
    assert got is not None
    assert (got.git_remote_url, got.git_branch) == ("https://h/r", "dev")


async def test_a_repository_url_is_stored_in_canonical_form_by_every_write(store: Store) -> None:
    """Whoever writes (an insert, a merge, an update), the URL is stored canonical
    (INTERFACE section 5) and never with its credentials."""
    await store.upsert(trace("a", git_remote_url="git@GitHub.com:acme/app.git"))
    await store.upsert(trace("b"))
    await store.upsert(trace("b", git_remote_url="https://u:tok@github.com/acme/app.git/"))
    await store.upsert(trace("c"))
    assert await store.update("c", git_remote_url="ssh://git@github.com:22/acme/app")
    assert await store.update("a", git_remote_url=None)
    got = await store.get_many(["a", "b", "c"])
    assert [got[i].git_remote_url for i in "abc"] == [None, *["https://github.com/acme/app"] * 2]


async def test_reupsert_keeps_created_at(store: Store) -> None:
    """created_at is set once."""
    await store.upsert(trace(created_at=5))
    await store.upsert(trace(created_at=99))
    got = await store.get("t1")
    assert got is not None
    assert got.created_at == 5


async def test_update_sets_only_the_given_fields(store: Store) -> None:
    """update() touches exactly what it is given; None clears."""
    await store.upsert(trace(title="a", preview="p", git_branch="main"))
    assert await store.update("t1", title="b", preview=None)
    got = await store.get("t1")
    assert got is not None
    assert (got.title, got.preview, got.git_branch, got.timestamp) == ("b", None, "main", 1000)


async def test_update_of_a_missing_trace_says_so(store: Store) -> None:
    assert not await store.update("nope", title="x")


async def test_update_rejects_unknown_fields(store: Store) -> None:
    with pytest.raises(ValueError, match="bogus"):
        await store.update("t1", bogus=1)


async def test_list_is_newest_first_and_limited(store: Store) -> None:
    for i in range(5):
        await store.upsert(trace(f"t{i}", timestamp=100 + i))
    assert [t.id for t in await store.list_traces(limit=3)] == ["t4", "t3", "t2"]


async def test_list_filters_by_agent_repo_and_directory(store: Store) -> None:
    """Filters combine; repo matches with or without .git; directory includes subdirs only."""
    await store.upsert(trace("a", directory="/w/app", git_remote_url="https://h/app.git"))
    await store.upsert(trace("b", directory="/w/app/sub", git_remote_url="https://h/app.git"))
    await store.upsert(trace("c", directory="/w/apple", git_remote_url="https://h/apple.git"))
    await store.upsert(
        trace("d", agent_id="codex", directory="/w/app", git_remote_url="https://h/app")
    )
    await store.upsert(trace("e", directory="/w/a_p%", git_remote_url=None))

    async def ids(**kw: Any) -> set[str]:
        return {t.id for t in await store.list_traces(**kw)}

    assert await ids(agent="codex") == {"d"}
    assert await ids(repo="https://h/app.git") == {"a", "b", "d"}
    assert await ids(repo="https://h/app") == {"a", "b", "d"}
    assert await ids(directory="/w/app") == {"a", "b", "d"}
    assert await ids(directory="/w/app/") == {"a", "b", "d"}
    assert await ids(directory="/w/a_p%") == {"e"}
    assert await ids(agent="claude-code", repo="https://h/app.git", directory="/w/app/sub") == {"b"}


async def test_atomic_rolls_back_on_error(store: Store) -> None:
    """Nothing of a failed transaction is kept."""

    async def failing() -> None:
        async with store.atomic() as tx:
            await tx.upsert(trace("gone"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert await store.get("gone") is None


async def test_close_is_idempotent_and_use_after_close_raises(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "x.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreClosed):
        await store.get("t1")


async def test_database_is_private_to_the_user(tmp_path: Path) -> None:
    """Prompts live in the database: the file is 0600 in a 0700 directory."""
    store = await Store.open(tmp_path / "private" / "traces.db")
    await store.close()
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "private" / "traces.db").stat().st_mode) == 0o600


async def test_store_uses_wal(store: Store) -> None:
    await store.upsert(trace())
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_write_blocked_past_busy_timeout_is_a_busy_store_error(tmp_path: Path) -> None:
    """Another writer holding the lock past the busy timeout gives StoreError(busy=True)."""
    db = tmp_path / "x.db"
    store = await Store.open(db, busy_timeout_s=0.2)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as info:
            await store.upsert(trace())
        assert info.value.busy
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.upsert(trace())  # and works again once the lock is gone
    assert await store.get("t1") is not None
    await store.close()


async def test_file_states_round_trip(store: Store) -> None:
    async with store.atomic() as tx:
        await tx.set_file("/a", agent_id="codex", size=10, mtime_ns=5, trace_ids=["x", "y\nz"])
        await tx.set_file("/b", agent_id="codex", size=1, mtime_ns=2, error="binary")
    states = await store.file_states_for(["/a", "/b", "/missing"])
    assert states["/a"].trace_ids == ("x", "y\nz")
    assert states["/b"].error == "binary"
    assert "/missing" not in states
    assert await store.file_state("/a") == states["/a"]
    assert await store.file_stamps() == {
        "/a": FileStamp(10, 5, None, True),
        "/b": FileStamp(1, 2, "binary", False),
    }


async def test_group_commit_isolates_a_row_the_database_refuses(store: Store) -> None:
    """Ten concurrent writes share a transaction; the one with an unstorable value fails
    alone and the other nine are committed."""
    captures = [Capture(new=(trace(f"t{i}"),)) for i in range(10)]
    captures[4] = Capture(new=(trace("t4", title="lone \udc80 surrogate"),))
    results = await asyncio.gather(*(store.write(c) for c in captures), return_exceptions=True)
    assert [type(r).__name__ for r in results].count("RowRejected") == 1
    assert isinstance(results[4], RowRejected)
    assert sorted(await store.get_many([f"t{i}" for i in range(10)])) == sorted(
        f"t{i}" for i in range(10) if i != 4
    )


async def test_a_write_says_which_traces_it_inserted_even_when_two_bring_the_same(
    store: Store,
) -> None:
    """Two files of one session, written in one group or one after the other: the trace is
    inserted once, and only one of the writes says it inserted it."""
    await store.upsert(trace("old"))
    results = await asyncio.gather(
        store.write(Capture(new=(trace("s", title="from the session file"), trace("old")))),
        store.write(Capture(new=(trace("s", preview="from the index file"),))),
    )
    assert list(results) == [frozenset({"s"}), frozenset()]
    assert await store.write(Capture(new=(trace("s"),))) == frozenset()
    stored = await store.get("s")
    assert stored is not None
    assert (stored.title, stored.preview) == ("from the session file", "from the index file")


async def test_group_commit_writes_a_trace_and_its_file_state_together(store: Store) -> None:
    await store.write(Capture(new=(trace("a"),), file=FileState("/f", "codex", 1, 2, ("a",), None)))
    assert await store.get("a") is not None
    state = await store.file_state("/f")
    assert state is not None
    assert state.trace_ids == ("a",)
