"""Cursor's messages read as the real Traces CLI reads them: a composer of the IDE's global
store (bubbles: thinking, tool calls and results, a grep summary, an edit with its file
contents, an error, a compaction) and agent transcripts (content blocks, tool records, a
line that is not JSON, no times), each compared message for message with what the CLI
uploads; a growing transcript read line by line; an unchanged store not read again."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_uploads import Shared, share_every_session
from tests.tracescli import require_traces_cli
from tracesd.messages import transcript
from tracesd.messages.readers import Position, Read
from tracesd.messages.readers.cursor import CursorReader
from tracesd.models import Trace

pytestmark = pytest.mark.traces_cli

COMPOSER = "0d6a9c2e-4b1f-4e8a-9c3d-5f7a1b2c3d4e"
BOTH = "1e7b0d3f-5c2a-4f9b-8d4e-6a8b2c3d4e5f"  # in the store and as a transcript
TRANSCRIPT = "2f8c1e4a-6d3b-4a0c-9e5f-7b9c3d4e5f60"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
MTIME_NS = 1_795_167_700_123_456_789


def _bubble(bubble_id: str, kind: int, at: str, **fields: Any) -> dict[str, Any]:
    return {"_v": 3, "type": kind, "bubbleId": bubble_id, "createdAt": at, **fields}


def _store(home: Path) -> Path:
    path = home / ".config" / "Cursor" / "User" / "globalStorage" / "state.vscdb"
    path.parent.mkdir(parents=True)
    bubbles = [
        _bubble("u1", 1, "2026-11-20T09:40:02.100Z", text=f"Füge den Pager an, key {SECRET}"),
        _bubble(
            "a1",
            2,
            "2026-11-20T09:40:05.000Z",
            text="",
            allThinkingBlocks=[{"thinking": "Look at pager.ts"}, {"thinking": ""}],
            thinking={"text": "First the tests"},
            thinkingDurationMs=1200,
            turnDurationMs=2500,
            toolFormerData={
                "name": "read_file",
                "params": json.dumps({"targetFile": "/tmp/p/pager.ts", "ключ": 1}),
                "result": json.dumps({"contents": "x", "n": 1.0, "b": [1e-7]}),
                "status": "completed",
            },
        ),
        _bubble(
            "a2",
            2,
            "2026-11-20T09:40:06.000Z",
            toolFormerData={
                "name": "grep_search",
                "params": "not json",
                "status": "error",
                "additionalData": {
                    "pattern": " limit ",
                    "topFiles": [{"uri": "src/a.ts", "matchCount": 2}, {"uri": ""}],
                },
            },
        ),
        _bubble(
            "a3",
            2,
            "2026-11-20T09:40:07.000Z",
            toolFormerData={
                "name": "edit_file_v2",
                "params": json.dumps({"relativeWorkspacePath": "src/pager.ts"}),
                "result": json.dumps({"beforeContentId": "c-before", "afterContentId": "c-after"}),
            },
        ),
        _bubble("a4", 2, "", text="Done: the last index is now < count.", turnDurationMs=40),
        _bubble("a5", 2, "2026-11-20T09:40:09", errorDetails={"title": "Oops", "message": "cut"}),
        _bubble("u2", 1, "2026-11-20T09:41:00.000Z", text="thanks"),
    ]
    headers = [{"bubbleId": b["bubbleId"], "type": b["type"]} for b in bubbles]
    headers.insert(2, {"bubbleId": "gone", "type": 2})  # a header without its bubble
    composer = {
        "_v": 17,
        "composerId": COMPOSER,
        "name": "Pager",
        "createdAt": 1795167600000,
        "lastUpdatedAt": 1795167660000,
        "modelConfig": {"modelName": "claude-4.5-sonnet"},
        "fullConversationHeadersOnly": headers,
        "latestConversationSummary": {
            "lastBubbleId": "u2",
            "summary": {"truncationLastBubbleIdInclusive": "a4", "summary": " the pager "},
        },
    }
    both = {
        "_v": 17,
        "composerId": BOTH,
        "createdAt": 1795167600000,
        "lastUpdatedAt": 1795167600000,
        "fullConversationHeadersOnly": [{"bubbleId": "b1", "type": 1}],
    }
    rows = [
        (f"composerData:{COMPOSER}", json.dumps(composer)),
        (f"composerData:{BOTH}", json.dumps(both)),
        (f"bubbleId:{BOTH}:b1", json.dumps(_bubble("b1", 1, "2026-11-20T09:00:00Z", text="hi"))),
        ("composer.content.c-before", "let last = n <= count"),
        ("composer.content.c-after", "let last = n < count"),
        *((f"bubbleId:{COMPOSER}:{b['bubbleId']}", json.dumps(b)) for b in bubbles),
    ]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
        conn.execute("CREATE TABLE cursorDiskKV (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
        conn.executemany("INSERT INTO cursorDiskKV VALUES (?, ?)", rows)
    conn.close()
    return path


TRANSCRIPT_LINES: list[Any] = [
    {
        "role": "user",
        "message": {"content": [{"type": "text", "text": "<user_query>\nWhy ü?\n</user_query>"}]},
    },
    {
        "role": "assistant",
        "message": {
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Two blocks, "},
                {"type": "text", "text": " one line.", "id": "blk-1"},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "Shell",
                    "input": {"cmd": "ls", "ö": 1},
                },
            ]
        },
    },
    "not json at all",
    {
        "type": "tool_result",
        "toolCallId": "call_1",
        "output": {"files": ["a"]},
        "timestamp": 1795167601,
    },
    {"type": "tool_call", "name": "Read", "args": '{"path": "x"}', "id": "r-9"},
    {"type": "error", "message": "rate limited", "timestamp": "2026-11-20T09:45:00Z"},
    {"type": "turn_ended"},
    {"role": "tool", "toolResult": {"toolCallId": "r-9", "result": ""}},
    {"role": "assistant", "content": "plain", "toolCalls": [{"name": "Edit", "arguments": 5}]},
    {"type": "user_message", "text": f"and {SECRET}"},
]


def _transcript(home: Path, composer: str, lines: list[Any]) -> Path:
    folder = home / ".cursor" / "projects" / "tmp-p" / "agent-transcripts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{composer}.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cursor") / "home"
    _store(root)
    _transcript(root, TRANSCRIPT, TRANSCRIPT_LINES)
    _transcript(root, BOTH, [{"role": "user", "message": {"content": "from the transcript"}}])
    return root


@pytest.fixture(scope="module")
def shared(home: Path) -> Shared:
    only = [COMPOSER, BOTH, TRANSCRIPT]
    return asyncio.run(share_every_session(require_traces_cli(), home, only=only))


def _trace(trace_id: str, source: Path) -> Trace:
    return Trace(id=trace_id, agent_id="cursor", source_path=str(source))


def _db(home: Path) -> Path:
    return home / ".config" / "Cursor" / "User" / "globalStorage" / "state.vscdb"


def _jsonl(home: Path, composer: str) -> Path:
    return home / ".cursor" / "projects" / "tmp-p" / "agent-transcripts" / f"{composer}.jsonl"


def test_a_global_store_composer_reads_into_the_messages_the_cli_uploads(
    shared: Shared, home: Path
) -> None:
    theirs = shared.messages[COMPOSER]
    assert {m["parts"][0]["type"] for m in theirs} >= {
        "text",
        "thinking",
        "tool_call",
        "tool_result",
        "error",
        "system_event",
    }
    assert transcript.messages(_trace(COMPOSER, _db(home))) == theirs


def test_a_composer_in_the_store_is_read_from_the_store_whichever_source_we_captured(
    shared: Shared, home: Path
) -> None:
    theirs = shared.messages[BOTH]
    assert [m["textContent"] for m in theirs] == ["hi"]
    assert transcript.messages(_trace(BOTH, _jsonl(home, BOTH))) == theirs
    assert transcript.messages(_trace(BOTH, _db(home))) == theirs


def test_an_agent_transcript_reads_into_the_messages_the_cli_uploads(
    shared: Shared, home: Path
) -> None:
    theirs = shared.messages[TRANSCRIPT]
    assert len(theirs) >= 10
    assert transcript.messages(_trace(TRANSCRIPT, _jsonl(home, TRANSCRIPT))) == theirs


def _follow(trace: Trace, reads: Iterator[Read]) -> list[dict[str, Any]]:
    """Events of successive reads, named as transcript.py names them."""
    grown = transcript.Transcript(trace)
    for read in reads:
        grown.add(read)
    return grown.entries


def test_a_growing_transcript_read_line_by_line_equals_one_whole_read(tmp_path: Path) -> None:
    lines = [x for x in TRANSCRIPT_LINES if not isinstance(x, str)]
    for line in lines:  # the fallback time is the file's mtime: give every line its own
        line.setdefault("timestamp", 1795167600)
    encoded = [json.dumps(x).encode() + b"\n" for x in lines]
    path = _transcript(tmp_path, TRANSCRIPT, [])
    trace = _trace(TRANSCRIPT, path)
    reader = CursorReader()

    def grow() -> Iterator[Read]:
        position = Position()
        for data in encoded:
            half = len(data) // 2
            with open(path, "ab") as f:
                f.write(data[:half])
            read = reader.read(trace, position)
            assert read.events == []
            assert read.position.offset == position.offset
            with open(path, "ab") as f:
                f.write(data[half:])
            read = reader.read(trace, read.position)
            assert read.position.offset - position.offset == len(data)
            position = read.position
            yield read

    assert _follow(trace, grow()) == transcript.messages(trace)
    assert len(transcript.messages(trace)) >= 10


def test_an_unchanged_store_is_not_read_again_and_a_new_bubble_is(home: Path) -> None:
    source = home.parent / "copy" / "state.vscdb"
    source.parent.mkdir()
    source.write_bytes(_db(home).read_bytes())
    trace = _trace(BOTH, source)
    reader = CursorReader()
    first = reader.read(trace, Position())
    assert first.whole
    assert [e.content for e in first.events] == ["hi"]
    assert reader.read(trace, first.position).events == []
    with sqlite3.connect(source) as conn:
        row = conn.execute(
            "SELECT value FROM cursorDiskKV WHERE key = ?", (f"composerData:{BOTH}",)
        )
        composer = json.loads(row.fetchone()[0])
        composer["fullConversationHeadersOnly"].append({"bubbleId": "b2", "type": 2})
        bubble = _bubble("b2", 2, "2026-11-20T09:00:01Z", text="hello")
        conn.executemany(
            "INSERT INTO cursorDiskKV VALUES (?, ?)",
            [
                (f"composerData:{BOTH}", json.dumps(composer)),
                (f"bubbleId:{BOTH}:b2", json.dumps(bubble)),
            ],
        )
    conn.close()
    again = reader.read(trace, first.position)
    assert again.whole
    assert [e.content for e in again.events] == ["hi", "hello"]


def test_a_cursor_cli_chat_has_no_messages_the_cli_would_upload(tmp_path: Path) -> None:
    chat = tmp_path / ".cursor" / "chats" / "abc" / "def" / "store.db"
    chat.parent.mkdir(parents=True)
    chat.write_bytes(b"")
    assert CursorReader().read(_trace("def", chat), Position()).events == []
