"""The shared readers of agents' stores: whole-file JSON documents, read in bounds, and
SQLite stores, read without ever locking or waiting on their agent."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tracesd.capture.adapters import _sqlite
from tracesd.capture.adapters._docs import Document
from tracesd.capture.adapters._files import SessionFile
from tracesd.errors import ParseError
from tracesd.models import TraceMeta


def document(path: Path, **kw: int) -> Document:
    with SessionFile(str(path)) as f:
        return Document(f, **kw)


# -------------------------------------------------------------------------- documents


def test_a_small_document_is_parsed_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"id": "T-1", "messages": [{"role": "user"}]}))
    doc = document(path)
    assert not doc.partial
    assert doc.require(dict)["id"] == "T-1"
    with pytest.raises(ParseError) as caught:
        doc.require(list)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b'{"id": "T-1", "messages": [{"ro', "incomplete"),
        (b"\x00\x01\x02binary", "binary"),
    ],
)
def test_a_document_that_is_not_json_yet_says_why(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(ParseError) as caught:
        document(path)
    assert caught.value.reason == reason


@pytest.fixture
def large(tmp_path: Path) -> Path:
    """A 1.3 MB thread whose environment, as Amp writes it, comes after the messages."""
    messages = [{"role": "user", "text": 'first "prompt": with a quoted key'}] + [
        {"role": "assistant", "text": "x" * 1000, "ts": i} for i in range(1300)
    ]
    path = tmp_path / "big.json"
    env = {"cwd": "/tmp/a b"}
    path.write_text(json.dumps({"id": "T-9", "messages": messages, "env": env}))
    return path


def test_a_large_document_is_read_in_a_head_and_a_tail(large: Path) -> None:
    doc = document(large, max_bytes=64 * 1024)
    assert doc.partial
    assert doc.member("id") == "T-9"
    assert doc.member("env", in_tail=True) == {"cwd": "/tmp/a b"}
    assert doc.member("nothing") is None
    items = doc.leading_items("messages")
    assert items[0] == {"role": "user", "text": 'first "prompt": with a quoted key'}
    assert 0 < len(items) < 1301  # only what is complete within the head
    assert max(doc.values("ts")) == 1299


def test_a_large_top_level_array_yields_its_leading_items(tmp_path: Path) -> None:
    path = tmp_path / "ui_messages.json"
    path.write_text(json.dumps([{"ts": i, "text": "y" * 500} for i in range(400)]))
    doc = document(path, max_bytes=16 * 1024)
    items = doc.leading_items()
    assert [item["ts"] for item in items] == list(range(len(items)))
    assert max(doc.values("ts")) == 399


# ------------------------------------------------------------------------------ SQLite


def make_store(path: Path, *, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE session (id TEXT PRIMARY KEY, updated INTEGER)")
    conn.execute("INSERT INTO session VALUES ('s1', 1)")
    return conn


def test_a_store_is_read_through_its_wal_file_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    writer = make_store(path, wal=True)
    writer.execute("INSERT INTO session VALUES ('s2', 2)")
    assert _sqlite.database_of(str(path) + "-wal") == str(path)
    with _sqlite.connect(str(path) + "-wal") as conn:
        assert conn.execute("SELECT count(*) FROM session").fetchone() == (2,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO session VALUES ('x', 0)")
        assert _sqlite.columns(conn, "session") == {"id", "updated"}
        assert _sqlite.columns(conn, "missing") == set()
    writer.close()


def test_a_store_held_locked_by_its_agent_fails_fast_and_reads_once_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.db"
    writer = make_store(path, wal=False)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO session VALUES ('s2', 2)")
    started = time.monotonic()
    with pytest.raises(ParseError) as caught, _sqlite.connect(str(path)) as conn:
        conn.execute("SELECT count(*) FROM session").fetchone()
    assert caught.value.reason == "locked"
    assert time.monotonic() - started < 2.0
    writer.execute("COMMIT")
    with _sqlite.connect(str(path)) as conn:
        assert conn.execute("SELECT count(*) FROM session").fetchone() == (2,)
    writer.close()


def test_a_store_that_is_not_a_database_or_is_gone_says_why(tmp_path: Path) -> None:
    garbage = tmp_path / "state.vscdb"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ParseError) as caught, _sqlite.connect(str(garbage)) as conn:
        conn.execute("SELECT 1 FROM sqlite_master").fetchall()
    assert caught.value.reason == "malformed"
    with pytest.raises(ParseError) as caught, _sqlite.connect(str(tmp_path / "gone.db")):
        pass
    assert caught.value.reason == "vanished"


def test_sessions_reads_again_only_what_changed(tmp_path: Path) -> None:
    sessions = _sqlite.Sessions()
    reads: list[list[str]] = []

    def read(ids: list[str]) -> dict[str, TraceMeta | None]:
        reads.append(sorted(ids))
        return {i: TraceMeta("x", i, "db", None, i, None, 1, 1) for i in ids if i != "draft"}

    first = sessions.refresh("db", {"a": 1, "b": 1, "draft": 1}, read)
    assert sorted(m.trace_id for m in first) == ["a", "b"]
    again = sessions.refresh("db", {"a": 1, "b": 2, "c": 1, "draft": 1}, read)
    assert sorted(m.trace_id for m in again) == ["a", "b", "c"]
    assert reads == [["a", "b", "draft"], ["b", "c"]]
    assert sessions.refresh("db", {"a": 1}, read)[0].trace_id == "a"  # b, c deleted
    assert reads[-1] == ["b", "c"]


def test_a_lookup_by_id_and_a_refresh_share_what_they_read(tmp_path: Path) -> None:
    """A transcript names one session of a store; reading it by id and the store's own
    refresh read each session once between them."""
    sessions = _sqlite.Sessions()
    reads: list[str] = []

    def one(sid: str) -> TraceMeta:
        reads.append(sid)
        return TraceMeta("x", sid, "db", None, sid, None, 1, 1)

    assert sessions.lookup("db", "a", 1, lambda: one("a")) == one("a")
    assert sessions.lookup("db", "a", 1, lambda: one("a")) == one("a")
    assert reads == ["a", "a", "a"]  # one read, and the two `one("a")` to compare with
    reads.clear()
    refreshed = sessions.refresh("db", {"a": 1, "b": 1}, lambda ids: {i: one(i) for i in ids})
    assert sorted(m.trace_id for m in refreshed) == ["a", "b"]
    reads.clear()
    assert sessions.lookup("db", "b", 2, lambda: one("b")) == one("b")  # its stamp moved
    assert reads == ["b", "b"]


def test_a_connection_kept_between_reads_holds_no_lock_and_follows_a_replaced_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.db"
    make_store(path, wal=False).close()
    with _sqlite.connect(str(path)) as conn:
        assert conn.execute("SELECT count(*) FROM session").fetchone() == (1,)
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("BEGIN EXCLUSIVE")  # would fail at once if our read had left a lock
    writer.execute("ROLLBACK")
    writer.close()

    fresh = tmp_path / "fresh.db"
    replacement = make_store(fresh, wal=False)
    replacement.execute("INSERT INTO session VALUES ('s2', 2)")
    replacement.close()
    fresh.replace(path)  # the agent rewrote its store: another inode
    with _sqlite.connect(str(path)) as conn:
        assert conn.execute("SELECT count(*) FROM session").fetchone() == (2,)
