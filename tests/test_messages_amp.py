"""Amp's messages as the real Traces CLI uploads them: a thread with thinking, several text
blocks in one message, tool calls (one without an id) and results (text and binary items,
cancelled, failed, an object), a prompt that interrupts the previous one, a cancelled turn,
a streaming and an empty message, a secret in a prompt and a key that is not ASCII,
compared message for message with what the CLI uploads for the same file (one CLI run for
the module). A thread is one document: a re-read of an unchanged one returns nothing;
after a message is added, the whole read includes it."""

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
from tracesd.messages.readers import Position, Reader, Unreadable, reader_for
from tracesd.models import Trace
from tracesd.store import rows

pytestmark = pytest.mark.traces_cli

THREAD = "T-019ab2c3-4d5e-7f60-8a9b-0c1d2e3f4a5b"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
USAGE = {
    "model": "claude-sonnet-4-5-20250929",
    "inputTokens": 12,
    "outputTokens": 340,
    "cacheCreationInputTokens": 2048,
    "cacheReadInputTokens": 0,
    "totalInputTokens": 2060,
    "timestamp": "2026-11-20T10:20:05.250Z",
}


def user(n: int | None, *content: dict[str, Any], sent: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": list(content)}
    if n is not None:
        message["messageId"] = n
    if sent is not None:
        message["meta"] = {"sentAt": sent}
    return message


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": body}


def result(call: str, run: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_result", "toolUseID": call, "run": run}


MESSAGES: list[dict[str, Any]] = [
    user(0, text(f"Rotate the key {SECRET} in deploy.sh"), sent=1795170001250),
    {
        "role": "assistant",
        "messageId": 1,
        "turnElapsedMs": 4200,
        "content": [
            {"type": "thinking", "thinking": "Look at deploy.sh first."},
            text("Reading the script."),
            {"type": "tool_use", "id": "toolu_a1", "name": "Read", "input": {"päth": "deploy.sh"}},
            text("Then I will edit it."),
            {"type": "tool_use", "name": "Grep", "input": {"pattern": "KEY"}},
            {"type": "redacted_thinking", "data": "xyz"},
        ],
        "state": {"type": "complete", "stopReason": "tool_use"},
        "usage": USAGE,
    },
    user(
        2,
        result(
            "toolu_a1", {"status": "done", "result": [{"text": "#!/bin/sh"}, {"data": "A" * 256}]}
        ),
        result("call-5", {"status": "cancelled"}),
        sent=1795170010000,
    ),
    user(3, text("Also update the README"), sent=1795170011000),
    user(4, text("and the changelog, please"), sent=1795170012000),
    {
        "role": "assistant",
        "messageId": 5,
        "content": [{"type": "tool_use", "id": "toolu_b2", "name": "edit_file", "input": None}],
        "state": {"type": "cancelled"},
        "usage": {"inputTokens": 3},
    },
    {
        "role": "assistant",
        "messageId": 6,
        "content": [text("partial")],
        "state": {"type": "streaming"},
    },
    {"role": "assistant", "messageId": 7, "content": []},
    {"role": "info", "messageId": 8, "content": [text("summary of the thread")]},
    user(
        None,
        result("toolu_b2", {"status": "error", "error": {"message": "permission denied"}}),
        result("toolu_x", {"status": "done", "result": {"output": "plain output"}}),
        result("toolu_y", {"status": "done", "result": {"exitCode": 0, "ärger": [1, 2]}}),
        result("toolu_z", {"status": "error"}),
    ),
    {
        "role": "assistant",
        "messageId": 10,
        "content": [text("  Rotated the key and documented it.  ")],
        "usage": {**USAGE, "timestamp": "2026-11-20T10:21:00.000Z"},
    },
    {"messageId": None, "role": "user", "content": [text("a null id is the text null")]},
    {"content": [text("no role: a message of type undefined, no event")]},
    {"role": "assistant", "messageId": 20, "content": "abc", "usage": {"inputTokens": 1}},
    {"role": "user", "messageId": 21, "content": [text(""), text("after an empty text")]},
    {
        "role": "assistant",
        "messageId": 22,
        "content": [{"type": "tool_use", "id": "", "name": "Empty"}],
        "turnElapsedMs": -5,
    },
    {
        "role": "assistant",
        "messageId": 23,
        "meta": {"sentAt": 1795170099000.5},
        "content": [text("x")],
    },
]


def thread(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "v": 3,
        "id": THREAD,
        "created": 1795170000000,
        "messages": messages,
        "env": {"initial": {"trees": [{"uri": "file:///tmp/amp-rich"}]}},
    }


def write_thread(home: Path, messages: list[dict[str, Any]] = MESSAGES) -> Path:
    threads = home / ".local" / "share" / "amp" / "threads"
    threads.mkdir(parents=True, exist_ok=True)
    path = threads / f"{THREAD}.json"
    path.write_text(json.dumps(thread(messages)))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = tmp_path_factory.mktemp("amp") / "home"
    write_thread(home)
    return asyncio.run(share_every_session(binary, home, only=[THREAD]))


def thread_read_by_amp(
    make_config: Callable[..., Config], home: Path
) -> tuple[Path, Trace, Reader]:
    """The thread written under `home`, its captured trace and the amp reader."""
    path = write_thread(home)
    trace = captured(make_config())
    reader = reader_for("amp")
    assert reader is not None
    return path, trace, reader


def captured(config: Config) -> Trace:
    """The Trace tracesd's capture makes of the thread (its adapter, as ingest runs it)."""
    for adapter in build_adapters(config):
        if adapter.agent_id == "amp":
            for root in adapter.roots():
                path = os.path.join(root, f"{THREAD}.json")
                if os.path.exists(path):
                    return rows.new_trace(adapter.parse(path).traces[0], None)
    raise AssertionError("no amp trace")


def test_a_rich_thread_reads_into_exactly_what_the_cli_uploads(
    shared: Shared, make_config: Callable[..., Config]
) -> None:
    trace = captured(make_config(environ={"HOME": str(shared.home)}))
    theirs = shared.messages[THREAD]
    mine = transcript.messages(trace)
    assert_same_messages(mine, theirs)
    assert SECRET not in json.dumps(mine)
    kinds = {part["type"] for message in mine for part in message["parts"]}
    assert kinds == {"text", "thinking", "tool_call", "tool_result", "error"}


def test_a_re_read_of_an_unchanged_thread_returns_nothing_and_an_added_message_is_read(
    make_config: Callable[..., Config], home: Path
) -> None:
    path, trace, reader = thread_read_by_amp(make_config, home)
    first = reader.read(trace, Position())
    assert first.whole
    again = reader.read(trace, first.position)
    assert again.events == []

    write_thread(home, [*MESSAGES, user(11, text("Thanks!"), sent=1795170100000)])
    os.utime(path, ns=(1_795_170_100_000_000_000, 1_795_170_100_000_000_000))
    after = reader.read(trace, again.position)
    assert after.whole
    assert after.events[: len(first.events)] == first.events
    added = after.events[len(first.events) :]
    assert [(e.kind, e.content, e.message_key, e.timestamp) for e in added] == [
        ("user_message", "Thanks!", "user:11", 1795170100000)
    ]
    assert transcript.messages(trace)[-1]["textContent"] == "Thanks!"


def test_a_thread_that_is_gone_or_not_a_thread_is_unreadable(
    make_config: Callable[..., Config], home: Path
) -> None:
    path, trace, reader = thread_read_by_amp(make_config, home)
    path.write_text(json.dumps({"id": THREAD, "messages": [None]}))
    with pytest.raises(Unreadable):
        reader.read(trace, Position())
    path.unlink()
    with pytest.raises(Unreadable):
        reader.read(trace, Position())
