"""Gemini CLI sessions read into messages (issue 14).

The pinned Traces CLI 0.6.31 reads no Gemini CLI session (a legacy agent to it), so there
is no upload to compare with: these check the reader's own contract (the events of CLI
0.5.9's Gemini reader, under the 0.6.31 key scheme; tracesd/messages/readers/gemini_cli.py)
and that a growing session read piece by piece gives what one read gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracesd.messages import transcript
from tracesd.messages.readers import Position, reader_for
from tracesd.models import Trace

SESSION = "7d8e9f00-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
USER = "1b2c3d4e-0000-4000-8000-000000000001"
GEMINI = "1b2c3d4e-0000-4000-8000-000000000002"
LATER = "1b2c3d4e-0000-4000-8000-000000000003"


def _at(second: str) -> str:
    return f"2026-12-02T08:00:{second}.000Z"


def _gemini(**more: Any) -> dict[str, Any]:
    return {
        "id": GEMINI,
        "timestamp": "2026-12-02T08:00:09.000Z",
        "type": "gemini",
        "content": "Both files are read; one test fails.",
        "thoughts": [
            {"subject": "Plan", "description": "Read then test.", "timestamp": _at("03")},
            {"subject": "Check", "description": "Look at the failure.", "timestamp": _at("06")},
        ],
        "toolCalls": [
            {"id": "read-1", "name": "read_file", "args": {"path": "a.py", "clé": "été"},
             "status": "success", "timestamp": _at("04"), "resultDisplay": "print(1)"},
            {"id": "shell-1", "name": "run_shell_command", "args": {"command": "pytest"},
             "status": "error", "timestamp": "2026-12-02T08:00:05.000Z",
             "result": [{"functionResponse": {"response": {"output": "1 failed"}}}]},
        ],
        "model": "gemini-2.5-pro",
        **more,
    }  # fmt: skip


RECORDS: list[dict[str, Any]] = [
    {"sessionId": SESSION, "projectHash": "ab" * 32, "startTime": "2026-12-02T08:00:00.000Z"},
    {"id": USER, "timestamp": "2026-12-02T08:00:01.000Z", "type": "user",
     "content": [{"text": f"Run the tests, key {SECRET}"}, {"text": "and read a.py"}]},
    {"$set": {"lastUpdated": "2026-12-02T08:00:01.000Z"}},
    _gemini(tokens=None),
    {"id": "info-1", "timestamp": "2026-12-02T08:00:10.000Z", "type": "info", "content": "Saved."},
    _gemini(tokens={"input": 900, "output": 40, "cached": 100, "thoughts": 30, "total": 970}),
    {"$rewindTo": USER},
    {"id": LATER, "timestamp": "2026-12-02T08:01:00.000Z", "type": "user", "content": "Thanks"},
]  # fmt: skip


def _reader_trace(path: Path) -> Trace:
    return Trace(id=SESSION, agent_id="gemini-cli", source_path=str(path))


def _collect(trace: Trace, steps: list[bytes], path: Path) -> list[dict[str, Any]]:
    """Write `steps` one after the other, reading after each as the follower does."""
    reader = reader_for("gemini-cli")
    assert reader is not None
    grown = transcript.Transcript(trace)
    position = Position()
    for step in steps:
        with path.open("ab") as handle:
            handle.write(step)
        read = reader.read(trace, position)
        # exactly up to the last complete line: never past what was appended
        assert read.position.offset == path.read_bytes().rfind(b"\n") + 1
        grown.add(read)
        position = read.position
    return grown.entries


def test_a_session_log_reads_into_its_messages_with_the_cli_key_scheme(tmp_path: Path) -> None:
    path = tmp_path / "session-2026-12-02T08-00-7d8e9f00.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    messages = transcript.messages(_reader_trace(path))
    shape = [
        (m["order"], m["sourceKey"], m["parts"][0]["sourceKey"], m["parts"][0]["type"])
        for m in messages
    ]
    assert shape == [
        (1, f"user:{USER}", "text:0", "text"),
        (2, f"gemini:{GEMINI}", "thinking:0", "thinking"),
        (3, f"gemini:{GEMINI}", "thinking:1", "thinking"),
        (4, f"gemini:{GEMINI}", "tool_call:read-1", "tool_call"),
        (5, f"gemini:{GEMINI}", "tool_result:read-1", "tool_result"),
        (6, f"gemini:{GEMINI}", "tool_call:shell-1", "tool_call"),
        (7, f"gemini:{GEMINI}", "tool_result:shell-1", "tool_result"),
        (8, f"gemini:{GEMINI}", "text:0", "text"),
        (9, f"user:{LATER}", "text:0", "text"),
    ]  # fmt: skip
    assert messages[0]["textContent"] == "Run the tests, key [REDACTED]\nand read a.py"
    assert messages[1]["parts"][0]["content"] == {"text": "Plan\nRead then test."}
    assert messages[3]["parts"][0]["content"]["args"] == {"path": "a.py", "cl%C3%A9": "été"}
    results = [messages[4]["parts"][0]["content"], messages[6]["parts"][0]["content"]]
    assert [(r["output"], r["status"]) for r in results] == [
        ("print(1)", "success"),
        ("1 failed", "error"),
    ]
    # the message written again carries its tokens, on its last event, under the same ids
    assert messages[7]["model"] == "gemini-2.5-pro"
    assert messages[7]["tokenUsage"] == {
        "inputTokenCount": 900,
        "outputTokenCount": 40,
        "cacheReadTokenCount": 100,
        "reasoningTokenCount": 30,
    }
    assert sum("tokenUsage" in m for m in messages) == 1


def test_a_growing_session_log_read_piece_by_piece_gives_what_one_read_gives(
    tmp_path: Path,
) -> None:
    """A half-written record waits for its newline; a message written again is returned
    again with the same order and keys; the pieces add up to one whole read."""
    whole_path = tmp_path / "whole.jsonl"
    whole_path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    whole = transcript.messages(_reader_trace(whole_path))
    path = tmp_path / "growing.jsonl"
    steps: list[bytes] = []
    for record in RECORDS:
        data = (json.dumps(record) + "\n").encode()
        steps += [data[: len(data) // 2], data[len(data) // 2 :]]
    assert _collect(_reader_trace(path), steps, path) == whole

    reader = reader_for("gemini-cli")
    assert reader is not None
    half = tmp_path / "half.jsonl"
    half.write_bytes(json.dumps(RECORDS[1]).encode())
    read = reader.read(_reader_trace(half), Position())
    assert read.events == []
    assert read.position.offset == 0


def test_a_legacy_document_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "session-2026-03-02T14-05-9c1d2e3f.json"
    messages = [RECORDS[1], _gemini(tokens={"input": 5, "output": 1})]
    document = {"sessionId": SESSION, "startTime": "2026-12-02T08:00:00.000Z", "messages": messages}
    path.write_text(json.dumps(document))
    trace = _reader_trace(path)
    reader = reader_for("gemini-cli")
    assert reader is not None
    first = reader.read(trace, Position())
    assert first.whole
    assert len(first.events) == 8
    again = reader.read(trace, first.position)
    assert again.events == []
    messages.append(RECORDS[-1])
    path.write_text(json.dumps(document))
    later = reader.read(trace, again.position)
    assert later.whole
    assert later.events[:8] == first.events
    assert later.events[8].content == "Thanks"
