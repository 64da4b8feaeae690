"""Claude Code's message reader against what the real Traces CLI uploads, and read as the
session grows: the same events, reading only the appended bytes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_uploads import Shared, share_every_session
from tests.tracescli import require_traces_cli
from tracesd.messages import transcript
from tracesd.messages.readers import Position, registry
from tracesd.models import Trace

pytestmark = pytest.mark.traces_cli

SESSION = "4c1d2e3f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"


def _line(n: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "parentUuid": None,
        "isSidechain": False,
        "cwd": "/tmp/tracesd-demo/rich",
        "sessionId": SESSION,
        "type": kind,
        "uuid": f"00000000-0000-4000-8000-{n:012d}",
        "timestamp": f"2026-11-21T10:00:{n:02d}.250Z",
        **fields,
    }


def _assistant(n: int, message_id: str, content: list[Any], out: int) -> dict[str, Any]:
    usage = {"input_tokens": 10, "output_tokens": out, "cache_read_input_tokens": 5}
    message = {"id": message_id, "model": "claude-opus-4-1", "content": content, "usage": usage}
    return _line(n, "assistant", message=message, requestId=f"req_{n}")


RECORDS: list[Any] = [
    {"type": "file-history-snapshot", "messageId": "x", "snapshot": {}},
    _line(1, "user", message={"role": "user", "content": f"Deploy with key {SECRET} please"}),
    _assistant(
        2,
        "msg_A",
        [
            {"type": "thinking", "thinking": "Plan: read, then edit.", "signature": "s"},
            {"type": "text", "text": "Reading the config. "},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"naïve-ключ": 1}},
        ],
        out=3,
    ),
    # the same API message goes on: its usage replaces the first line's
    _assistant(
        3,
        "msg_A",
        [{"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "ls"}}],
        out=57,
    ),
    _line(
        4,
        "user",
        message={
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a = 1"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "ls: denied"}, {"type": "image"}],
                },
                {"type": "text", "text": "and also check the tests"},
            ],
        },
    ),
    "{this line is not json",
    _line(5, "system", subtype="turn_duration", durationMs=1234, messageCount=4),
    _line(6, "permission-mode", permissionMode="acceptEdits"),
    _line(
        7,
        "system",
        subtype="compact_boundary",
        compactMetadata={"trigger": "auto", "preTokens": 9000},
    ),
    _line(
        8,
        "user",
        isCompactSummary=True,
        message={"role": "user", "content": "Summary: read config, ls failed."},
    ),
    _assistant(9, "msg_B", [{"type": "text", "text": "Done. 完了"}], out=12),
    _line(
        10,
        "attachment",
        attachment={"type": "file", "filename": "a.py", "path": "/tmp/a.py", "displayPath": "a.py"},
    ),
    _assistant(11, "msg_B", [{"type": "text", "text": "One more thing."}], out=20),
]


def _write(path: Path, records: list[Any]) -> bytes:
    data = b"".join(
        (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)).encode() + b"\n"
        for r in records
    )
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = tmp_path_factory.mktemp("claude") / "home"
    folder = home / ".claude" / "projects" / "-tmp-tracesd-demo-rich"
    folder.mkdir(parents=True)
    _write(folder / f"{SESSION}.jsonl", RECORDS)
    return asyncio.run(share_every_session(binary, home, only=[SESSION]))


def _trace(path: Path) -> Trace:
    return Trace(id=SESSION, agent_id="claude-code", source_path=str(path))


def test_a_rich_session_reads_into_exactly_the_messages_the_cli_uploads(shared: Shared) -> None:
    """Thinking, text and tool calls of one line, token usage replaced by a later line of
    the same API message, tool results (an error, mixed blocks), a prompt with a secret,
    non-ASCII keys, a compaction with its summary, system events, a malformed line."""
    path = shared.home / ".claude/projects/-tmp-tracesd-demo-rich" / f"{SESSION}.jsonl"
    theirs = shared.messages[SESSION]
    mine = transcript.messages(_trace(path))
    assert mine == theirs
    kinds = {p["type"] for m in theirs for p in m["parts"]}
    assert {"thinking", "tool_call", "tool_result", "text", "system_event"} <= kinds
    assert SECRET not in json.dumps(theirs)


def test_a_growing_session_reads_the_same_events_reading_only_what_was_appended(
    tmp_path: Path,
) -> None:
    """Written a line (and half a line) at a time, read after each write: the same messages
    as one whole read, each read consuming at most the bytes appended, only whole lines."""
    path = tmp_path / f"{SESSION}.jsonl"
    whole = _write(path, RECORDS)
    expected = transcript.messages(_trace(path))
    reader = registry.READERS["claude-code"]
    path.write_bytes(b"")
    position = Position()
    written = 0
    grown = transcript.Transcript(_trace(path))
    lines = whole.splitlines(keepends=True)
    for line in lines:
        for piece in (line[: len(line) // 2], line[len(line) // 2 :]):
            with path.open("ab") as handle:
                handle.write(piece)
            written += len(piece)
            read = reader.read(_trace(path), position)
            assert read.position.offset - position.offset <= len(piece) + len(line)
            assert whole[: read.position.offset].endswith(b"\n") or read.position.offset == 0
            assert read.position.offset <= written
            json.dumps(read.position.state)
            grown.add(read)
            position = read.position
    assert position.offset == len(whole)
    assert grown.entries == expected
