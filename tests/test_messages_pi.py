"""Pi's message reader against what the real Traces CLI uploads, and re-read as it changes."""

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

SESSION = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
NAME = f"2026-11-21T10-00-00-000Z_{SESSION}.jsonl"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"


def _entry(n: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "id": f"e{n:04d}",
        "timestamp": f"2026-11-21T10:00:{n:02d}.000Z",
        **fields,
    }


def _message(n: int, **message: Any) -> dict[str, Any]:
    return _entry(n, "message", message={"timestamp": 1795255200000 + n * 1000 - 500, **message})


RECORDS: list[Any] = [
    {
        "type": "session",
        "id": SESSION,
        "timestamp": "2026-11-21T10:00:00.000Z",
        "cwd": "/tmp/pi-rich",
    },
    _entry(1, "model_change", modelId="claude-sonnet-4-5"),
    _message(2, role="user", content=[{"type": "text", "text": f"Use {SECRET} to deploy"}]),
    _message(
        3,
        role="assistant",
        model="claude-sonnet-4-5",
        content=[
            {"type": "thinking", "thinking": "Read first."},
            {"type": "text", "text": "Reading."},
            {
                "type": "toolCall",
                "id": "call_1",
                "name": "read",
                "arguments": {"path": "/x", "ключ": 1},
            },
            {"type": "toolCall", "id": "call_2", "name": "bash", "arguments": {"command": "false"}},
        ],
        usage={"input": 100, "output": 20, "cacheRead": 5, "cacheWrite": 0},
    ),
    _message(
        4,
        role="toolResult",
        toolCallId="call_1",
        toolName="read",
        content=[{"type": "text", "text": "x = 1"}],
    ),
    _message(
        5, role="toolResult", toolCallId="call_2", toolName="bash", content="exit 1", isError=True
    ),
    "not json at all",
    _message(6, role="bashExecution", command="ls", output="a\nb", exitCode=0),
    _entry(7, "error", message="rate limited"),
    _entry(
        8,
        "compaction",
        summary="Read /x; bash failed.",
        tokensBefore=5000,
        firstKeptEntryId="e0004",
    ),
    _message(9, role="user", content="again"),
    _message(
        10,
        role="assistant",
        model="claude-sonnet-4-5",
        content=[{"type": "text", "text": "Done. 完了"}],
    ),
]


def _write(path: Path, records: list[Any]) -> None:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records
        )
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = tmp_path_factory.mktemp("pi") / "home"
    folder = home / ".pi" / "agent" / "sessions" / "--tmp-pi-rich--"
    folder.mkdir(parents=True)
    _write(folder / NAME, RECORDS)
    return asyncio.run(share_every_session(binary, home, only=[SESSION]))


def _trace(path: Path) -> Trace:
    return Trace(id=SESSION, agent_id="pi", source_path=str(path), timestamp=1795255300000)


def test_a_rich_session_reads_into_exactly_the_messages_the_cli_uploads(shared: Shared) -> None:
    """Thinking, text and two tool calls in one message with its usage, tool results (one
    an error), a bash execution, an error entry, a compaction, a secret, non-ASCII keys."""
    path = shared.home / ".pi/agent/sessions/--tmp-pi-rich--" / NAME
    theirs = shared.messages[SESSION]
    assert transcript.messages(_trace(path)) == theirs
    kinds = {p["type"] for m in theirs for p in m["parts"]}
    assert {"thinking", "tool_call", "tool_result", "text", "error", "system_event"} <= kinds
    assert SECRET not in json.dumps(theirs)


def test_an_unchanged_session_reads_nothing_and_a_changed_one_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / NAME
    _write(path, RECORDS[:5])
    reader = registry.READERS["pi"]
    first = reader.read(_trace(path), Position())
    assert first.whole
    assert first.events
    again = reader.read(_trace(path), first.position)
    assert again.events == []
    assert not again.whole
    _write(path, RECORDS)
    grown = reader.read(_trace(path), again.position)
    assert grown.whole
    assert [e.order for e in grown.events][: len(first.events)] == [e.order for e in first.events]
    assert len(grown.events) > len(first.events)
    assert any(e.content == "Done. 完了" for e in grown.events)
