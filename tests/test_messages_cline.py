"""Cline's messages as the real Traces CLI uploads them: a classic VS Code task and an SDK
session, each with tool calls and results, thinking, envelopes the CLI takes off, a tool
result written as text, a completion with the user's feedback, a secret in a prompt and a
key that is not ASCII, compared message for message with what the CLI uploads for the same
files (one CLI run for the module). Cline keeps a session as one document: a re-read of an
unchanged one returns nothing; after a message is added, the whole read includes it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli_uploads import Shared, assert_same_messages, share_every_session
from tests.tracescli import require_traces_cli
from tracesd.capture.adapters import build_adapters
from tracesd.config import Config
from tracesd.messages import transcript
from tracesd.messages.readers import Position, Unreadable, reader_for
from tracesd.models import Trace
from tracesd.store import rows

pytestmark = pytest.mark.traces_cli

TASK = "1795170000000"
SDK = "1795170600000_q7w2e"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
STORAGE = ".config/Code/User/globalStorage/saoudrizwan.claude-dev"

ENV = (
    "<environment_details>\n# Current Working Directory (/tmp/cline-rich) Files\nmain.py\n"
    "</environment_details>"
)

TASK_HISTORY: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": f"<task>\nWire the deploy key {SECRET} into CI\n</task>"},
            {"type": "text", "text": ENV},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "First read the workflow file."},
            {"type": "text", "text": "Reading the workflow."},
            {
                "type": "tool_use",
                "id": "toolu_read_1",
                "name": "read_file",
                "input": {"path": ".github/ci.yml", "ключ": "значение"},
            },
        ],
        "metrics": {"inputTokens": 1200, "outputTokens": 80, "cacheReadTokens": 5},
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_read_1",
                "content": [{"type": "text", "text": "jobs:\n  build: {}"}],
            },
            {"type": "text", "text": ENV},
        ],
    },
    {
        "role": "assistant",
        "id": "asst-msg-2",
        "content": [
            {"type": "tool_use", "name": "execute_command", "input": '{"command": "make ci"}'},
            {"type": "tool_use", "id": "toolu_search", "name": "search_files", "input": "*.yml"},
        ],
        "usage": {"inputTokens": 10, "outputTokens": 3, "reasoningTokens": 2},
    },
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "[execute_command for 'make ci'] Result:\nok\n"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_search",
                "is_error": True,
                "content": {"résumé": 1, "2": [True, None], "a": 1.5},
            },
        ],
    },
    {"role": "system", "content": "ignored"},
    42,
    {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_done",
                "name": "attempt_completion",
                "input": {"result": "CI now uses the deploy key ✓"},
            }
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_done",
                "content": "<feedback>\nAlso document it, s'il vous plaît\n</feedback>",
            }
        ],
    },
    {"role": "user", "content": "[TASK RESUMPTION] This task was interrupted 2 minutes ago."},
    {"role": "Assistant", "content": None, "text": "  Documented it in README.  "},
    # entries that make no event still count as messages of their role
    {"role": "user", "content": [{"type": "text", "text": ENV}]},
    {"role": "assistant", "content": [{"type": "thinking"}]},
    {"role": "user", "content": [{"type": "image", "source": {}}, 5, {"text": "  no type "}]},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "after skip"},
            {"type": "tool_use", "name": "x", "input": [1, 2]},
            {"type": "tool_use", "name": "y", "input": 7},
        ],
        "metrics": {"outputTokens": 1.7, "inputTokens": -1},
    },
    {"role": "user", "content": "Command executed.\nOutput: hidden"},
    {"content": "no role"},
    {"role": "user", "content": [{"type": "tool_result", "content": "  "}]},
]

SDK_MESSAGES: dict[str, Any] = {
    "version": 1,
    "updated_at": "2026-11-20T10:12:30.500Z",
    "messages": [
        {
            "id": "msg_q7w2e_1",
            "role": "user",
            "content": [{"type": "text", "text": "<user_input>Rename the CLI flag</user_input>"}],
        },
        {
            "id": "msg_q7w2e_2",
            "role": "assistant",
            "timestamp": "2026-11-20T10:11:00.000Z",
            "modelInfo": {"modelId": "claude-sonnet-4-5"},
            "content": [
                {"type": "reasoning", "text": "The flag lives in cli.py."},
                {"type": "tool_call", "callId": "call_1", "toolName": "edit", "args": {"f": 1}},
            ],
            "metrics": {"inputTokens": 7, "cacheWriteTokens": 9},
        },
        {
            "id": "msg_q7w2e_3",
            "role": "user",
            "content": [
                {"type": "tool-result", "callId": "call_1", "output": {"ok": True}},
                {"type": "tool_result", "callId": "call_unknown", "name": "grep"},
            ],
        },
        {
            "id": "msg_q7w2e_4",
            "role": "assistant",
            "ts": 1795170700,
            "content": [{"type": "text", "text": "Renamed --dry to --dry-run."}],
        },
        {"role": "user", "ts": "1795170650", "content": [{"text": "<feedback>later</feedback>"}]},
        {
            "role": "assistant",
            "time": "2026-11-20T10:11:30+01:00",
            "content": [{"type": "text", "text": "zone"}],
            "usage": {"thoughtsTokenCount": 4},
        },
        {"role": "assistant", "timestamp": "not a date", "content": "plain string content"},
    ],
}


def write_sessions(home: Path) -> None:
    task = home / STORAGE / "tasks" / TASK
    task.mkdir(parents=True)
    (task / "api_conversation_history.json").write_text(json.dumps(TASK_HISTORY))
    ui = [{"ts": 1795170000000, "type": "say", "say": "task", "text": "Wire the deploy key"}]
    (task / "ui_messages.json").write_text(json.dumps(ui))
    state = home / STORAGE / "state"
    state.mkdir(parents=True)
    entry = {"id": TASK, "ts": 1795170000000, "task": "Wire", "cwdOnTaskInitialization": "/tmp"}
    (state / "taskHistory.json").write_text(json.dumps([entry]))
    session = home / ".cline" / "data" / "sessions" / SDK
    session.mkdir(parents=True)
    manifest = {
        "version": 1,
        "session_id": SDK,
        "started_at": "2026-11-20T10:10:00.000Z",
        "cwd": "/tmp/cline-rich-sdk",
        "prompt": "Rename the CLI flag",
    }
    (session / f"{SDK}.json").write_text(json.dumps(manifest))
    (session / f"{SDK}.messages.json").write_text(json.dumps(SDK_MESSAGES))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = tmp_path_factory.mktemp("cline") / "home"
    write_sessions(home)
    return asyncio.run(share_every_session(binary, home, only=[TASK, SDK]))


def captured(config: Config, trace_id: str) -> Trace:
    """The Trace tracesd's capture makes of the session (its adapter, as ingest runs it)."""
    for adapter in build_adapters(config):
        if adapter.agent_id != "cline":
            continue
        for root in adapter.roots():
            for folder, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    if adapter.matches(os.path.relpath(path, root)):
                        for meta in adapter.parse(path).traces:
                            if meta.trace_id == trace_id:
                                return rows.new_trace(meta, None)
    raise AssertionError(f"no cline trace {trace_id}")


@pytest.mark.parametrize("trace_id", [TASK, SDK])
def test_a_rich_session_reads_into_exactly_what_the_cli_uploads(
    shared: Shared, make_config: Callable[..., Config], trace_id: str
) -> None:
    trace = captured(make_config(environ={"HOME": str(shared.home)}), trace_id)
    theirs = shared.messages[trace_id]
    mine = transcript.messages(trace)
    assert_same_messages(mine, theirs)
    assert SECRET not in json.dumps(mine)
    kinds = {part["type"] for message in mine for part in message["parts"]}
    if trace_id == TASK:
        assert kinds == {"text", "thinking", "tool_call", "tool_result"}
        assert len(mine) >= 14


def test_a_re_read_of_an_unchanged_task_returns_nothing_and_an_added_message_is_read(
    make_config: Callable[..., Config], home: Path
) -> None:
    write_sessions(home)
    trace = captured(make_config(), TASK)
    reader = reader_for("cline")
    assert reader is not None
    first = reader.read(trace, Position())
    assert first.whole
    assert len(first.events) >= 14
    again = reader.read(trace, first.position)
    assert again.events == []

    history = home / STORAGE / "tasks" / TASK / "api_conversation_history.json"
    added = {"role": "assistant", "content": [{"type": "text", "text": "One more thing."}]}
    history.write_text(json.dumps([*TASK_HISTORY, added]))
    os.utime(history, ns=(1_795_171_000_123_456_789, 1_795_171_000_123_456_789))
    after = reader.read(trace, again.position)
    assert after.whole
    assert [e.order for e in after.events] == list(range(1, len(first.events) + 2))
    last = after.events[-1]
    assert (last.kind, last.content, last.message_key) == (
        "agent_text",
        "One more thing.",
        "assistant:6",
    )
    # no message carries a time: each falls back to the history file's mtime, as the CLI's
    assert {e.timestamp for e in after.events} == {1_795_171_000_123.4568}
    assert transcript.messages(trace)[-1]["textContent"] == "One more thing."


def test_a_session_whose_files_are_gone_is_unreadable(
    make_config: Callable[..., Config], home: Path
) -> None:
    write_sessions(home)
    trace = captured(make_config(), SDK)
    reader = reader_for("cline")
    assert reader is not None
    assert reader.read(trace, Position()).events
    os.remove(home / ".cline" / "data" / "sessions" / SDK / f"{SDK}.messages.json")
    with pytest.raises(Unreadable):
        reader.read(trace, Position())


def test_a_session_captured_from_the_sessions_database_reads_its_messages_file(
    home: Path,
) -> None:
    """A session tracesd knows from `db/sessions.db` only (no manifest yet) is read from
    `sessions/<id>/<id>.messages.json` beside the `db` folder, as the CLI reads it."""
    write_sessions(home)
    data = home / ".cline" / "data"
    os.remove(data / "sessions" / SDK / f"{SDK}.json")
    database = str(data / "db" / "sessions.db")
    trace = Trace(id=SDK, agent_id="cline", source_path=database)
    messages = transcript.messages(trace)
    assert [m["sourceKey"] for m in messages[:2]] == ["user:msg_q7w2e_1", "assistant:msg_q7w2e_2"]
    assert messages[0]["timestamp"] == 1795169550500  # the messages file's updated_at
