"""Codex rollouts read into the messages the real Traces CLI uploads for them (issue 14).

A crafted rollout with what Codex writes (the environment envelope, texts written twice,
thinking, shell and MCP tool calls with Codex's exit banners and durations, a patch, a web
search, a skill injection, token counts and quota, a compaction, a bad line, a key that is
not ASCII, a secret) is shared by the real CLI to a recording server; tracesd must read it
into the same messages, in one read or line by line as the file grows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli_uploads import Shared, assert_same_messages, share_every_session
from tests.test_traces_cli_fields import captured
from tests.tracescli import require_traces_cli
from tracesd.config import Config
from tracesd.messages import transcript
from tracesd.messages.readers import Position, reader_for
from tracesd.models import Trace

pytestmark = pytest.mark.traces_cli

SESSION = "019bb2c3-4d5e-7f60-8a9b-1c2d3e4f5a6b"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"


def _line(ts: str, kind: str, payload: dict[str, Any]) -> str:
    return json.dumps({"timestamp": f"2026-12-01T10:{ts}Z", "type": kind, "payload": payload})


def _item(ts: str, payload: dict[str, Any]) -> str:
    return _line(ts, "response_item", payload)


def _event(ts: str, payload: dict[str, Any]) -> str:
    return _line(ts, "event_msg", payload)


def _said(role: str, *texts: str) -> dict[str, Any]:
    block = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": block, "text": t} for t in texts]}


PROMPT = f"List the files and search the issues, my key is {SECRET}"
ENVELOPE = "<environment_context>\n  <cwd>/tmp/x</cwd>\n</environment_context>"
SKILL = "<skill>\n<name>pdf</name>\n<path>/skills/pdf/SKILL.md</path>\nRead PDFs.\n</skill>"
ANSWER = ("Two files here.", "The issue search failed; I patched x.py.")
LINES = [
    _line("00:00.000", "session_meta", {"id": SESSION, "timestamp": "2026-12-01T10:00:00.000Z",
          "cwd": "/tmp/tracesd-demo/codex-rich", "originator": "codex_cli_rs"}),
    _item("00:00.100", _said("user", ENVELOPE)),
    _event("00:00.200", {"type": "task_started", "turn_id": "turn-1"}),
    _line("00:00.300", "turn_context", {"turn_id": "turn-1", "cwd": "/tmp/tracesd-demo/codex-rich",
          "model": "gpt-5.1-codex"}),
    _item("00:01.000", _said("user", PROMPT)),
    _event("00:01.001", {"type": "user_message", "message": PROMPT}),
    _event("00:02.000", {"type": "agent_reasoning", "text": "**Listing** first, then searching."}),
    _item("00:02.001", {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text",
          "text": "**Listing** first"}]}),
    _item("00:03.000", {"type": "function_call", "name": "shell", "call_id": "call_ls",
          "arguments": json.dumps({"command": ["ls"], "répertoire": "/tmp/été"})}),
    _event("00:04.000", {"type": "exec_command_end", "call_id": "call_ls", "exit_code": 0,
           "duration": {"secs": 1, "nanos": 250_000_000}}),
    _item("00:04.100", {"type": "function_call_output", "call_id": "call_ls",
          "output": "Exit code: 0\nWall time: 1.2 seconds\nOutput:\nfile-a\n\n\nfile-b\n"}),
    "{this line is not JSON",
    _item("00:05.000", {"type": "function_call", "name": "search_issues",
          "namespace": "mcp__github__", "call_id": "call_gh", "arguments": "not json"}),
    _item("00:06.000", {"type": "function_call_output", "call_id": "call_gh",
          "output": json.dumps({"output": "Process exited with code 2\nboom", "metadata": {}})}),
    _item("00:07.000", {"type": "custom_tool_call", "name": "apply_patch", "call_id": "call_patch",
          "input": "*** Begin Patch\n*** Update File: x.py\n*** End Patch"}),
    _event("00:07.500", {"type": "patch_apply_end", "call_id": "call_patch", "success": True,
           "changes": {"/tmp/x.py": {"type": "update"}, "/tmp/ü.py": {"type": "add",
                       "move_path": "/tmp/v.py"}, "/tmp/y": {"type": "rename"}}}),
    _item("00:08.000", {"type": "custom_tool_call_output", "call_id": "call_patch",
          "output": json.dumps({"output": "Success. Updated x.py", "metadata": {"exit_code": 0}})}),
    _item("00:09.000", {"type": "web_search_call", "id": "ws_1", "status": "completed",
          "action": {"type": "search", "query": "codex rollout"}}),
    _item("00:10.000", {"type": "message", "role": "assistant", "id": "msg_1",
          "content": [{"type": "output_text", "text": ANSWER[0]}, {"type": "output_text",
                      "text": ANSWER[1]}]}),
    _event("00:10.001", {"type": "agent_message", "message": "\n".join(ANSWER)}),
    _event("00:10.500", {"type": "token_count", "info": {
        "total_token_usage": {"input_tokens": 9000, "cached_input_tokens": 4000,
                              "output_tokens": 700, "reasoning_output_tokens": 200},
        "last_token_usage": {"input_tokens": 5000, "cached_input_tokens": 2000,
                             "output_tokens": 400, "reasoning_output_tokens": 100}},
        "rate_limits": {"primary": {"used_percent": 91.5, "window_minutes": 300,
                                    "resets_at": 1796000000}, "plan_type": "pro"}}),
    _event("00:11.000", {"type": "task_complete", "turn_id": "turn-1", "completed_at": 1795600211,
           "duration_ms": 11000}),
    _line("00:12.000", "compacted", {"message": "summary", "window_number": 2,
          "previous_window_id": "win-1"}),
    _event("00:12.100", {"type": "context_compacted"}),
    _event("00:13.000", {"type": "task_started", "turn_id": "turn-2"}),
    _item("00:13.100", _said("user", SKILL)),
    _item("00:14.000", _said("user", "Thanks — ¿y ahora?")),
    _event("00:14.001", {"type": "user_message", "message": "Thanks — ¿y ahora?"}),
    _item("00:15.000", _said("assistant", "Done.")),
    _event("00:15.500", {"type": "token_count", "info": {"last_token_usage": {
        "input_tokens": 100, "output_tokens": 5}}}),
    _event("00:16.000", {"type": "turn_aborted", "turn_id": "turn-2", "completed_at": 1795600216.5,
           "duration_ms": 3000}),
]  # fmt: skip


def _home(root: Path) -> Path:
    home = root / "home"
    folder = home / ".codex" / "sessions" / "2026" / "12" / "01"
    folder.mkdir(parents=True)
    (folder / f"rollout-2026-12-01T10-00-00-{SESSION}.jsonl").write_text("\n".join(LINES) + "\n")
    return home


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = _home(tmp_path_factory.mktemp("codex"))
    return asyncio.run(share_every_session(binary, home, only=[SESSION]))


def _trace(shared: Shared, make_config: Callable[..., Config]) -> Trace:
    return captured(make_config(environ={"HOME": str(shared.home)}))[SESSION]


def test_a_rich_rollout_reads_into_exactly_the_messages_the_cli_uploads(
    shared: Shared, make_config: Callable[..., Config]
) -> None:
    theirs = shared.messages[SESSION]
    mine = transcript.messages(_trace(shared, make_config))
    assert_same_messages(mine, theirs)
    # what the session was crafted to reach, as the CLI uploads it
    kinds = {p["type"] for m in theirs for p in m["parts"]}
    assert kinds == {"text", "thinking", "tool_call", "tool_result", "system_event"}
    assert not any(SECRET in json.dumps(m) for m in theirs)
    assert any(
        "r%C3%A9pertoire" in p["content"].get("args", {}) for m in theirs for p in m["parts"]
    )
    assert sum("tokenUsage" in m for m in theirs) == 2


def test_a_growing_rollout_read_line_by_line_gives_what_one_whole_read_gives(
    shared: Shared, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Each read takes only the complete lines appended since the last (a half-written line
    waits for its newline); carried state makes the events, keys and token usage of the
    pieces those of one read, including a usage put on an event an earlier read returned."""
    trace = _trace(shared, make_config)
    whole = transcript.messages(trace)
    growing = tmp_path / "rollout.jsonl"
    growing.write_bytes(b"")
    trace = Trace(**{**trace.as_dict(), "source_path": str(growing)})
    reader = reader_for("codex")
    assert reader is not None
    grown = transcript.Transcript(trace)
    position = Position()
    for line in LINES:
        data = (line + "\n").encode()
        half = len(data) // 2
        with growing.open("ab") as handle:
            handle.write(data[:half])
        read = reader.read(trace, position)
        assert read.events == []
        assert read.position.offset == position.offset
        with growing.open("ab") as handle:
            handle.write(data[half:])
        read = reader.read(trace, read.position)
        assert read.position.offset - position.offset == len(data)
        assert not read.whole
        assert not read.more
        json.dumps(read.position.state)  # JSON-able
        grown.add(read)
        position = read.position
    assert grown.entries == whole
