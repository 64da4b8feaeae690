"""Copilot Chat (VS Code) sessions read into the messages the real Traces CLI uploads (issue 14).

Two crafted sessions in a VS Code workspace, one a `.jsonl` patch log (set, append with and
without truncation, delete, a bad line) and one a `.json` document, with what Copilot writes
(thinking, text, terminal and other tool invocations, text after a tool, an edit, a warning,
skipped kinds, an auto-mode model, cancelled and failed requests, a system-initiated request,
a key that is not ASCII, a secret), are shared by the real CLI to a recording server;
tracesd must read each into the same messages, and re-read a session only when it changed.
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

LOG_ID = "4c6e8a0b-2d4f-4a6c-8e0a-2c4e6a8c0e2a"
DOC_ID = "5d7f9b1c-3e5a-4b7d-9f1b-3d5f7b9d1f3b"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
T0 = 1795900000000


def _request(rid: str | None, text: str, at: int | str, **more: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "message": {"text": text, "parts": []},
        "response": [],
        "timestamp": at,
        "modelId": "copilot/gpt-4.1",
        **more,
    }
    if rid is not None:
        request["requestId"] = rid
    return request


TERMINAL = {
    "kind": "toolInvocationSerialized",
    "toolId": "run_in_terminal",
    "toolCallId": "tc-term",
    "invocationMessage": {"value": "Running `pytest -q`"},
    "isComplete": True,
    "toolSpecificData": {
        "kind": "terminal",
        "commandLine": {"original": "pytest -q"},
        "cwd": {"fsPath": "/tmp/tracesd-demo/copilot-rich"},
        "language": "sh",
        "terminalCommandState": {"exitCode": 1, "timestamp": T0 + 9000, "duration": 2500},
        "terminalCommandOutput": {"text": "\x1b[31mFAILED\x1b[0m test_x.py::test_a\n"},
    },
}
READ = {
    "kind": "toolInvocationSerialized",
    "toolId": "copilot_readFile",
    "toolCallId": "tc-read",
    "invocationMessage": {"value": "Reading x.py", "uris": {"b": {"fsPath": "/tmp/x.py"}}},
    "pastTenseMessage": {"value": "Read x.py"},
    "isComplete": True,
    "toolSpecificData": {"kind": "input", "clé": "valeur", "rawInput": {"path": "x.py"}},
}
PATCHES: list[dict[str, Any] | str] = [
    {
        "kind": 0,
        "v": {
            "version": 3,
            "creationDate": T0,
            "responderUsername": "GitHub Copilot",
            "sessionId": LOG_ID,
            "customTitle": "Fix the tests",
            "requests": [],
        },
    },
    {
        "kind": 2,
        "k": ["requests"],
        "v": [_request("req-1", f"Fix the failing tests; token {SECRET}", T0 + 5000)],
    },
    {
        "kind": 2,
        "k": ["requests", 0, "response"],
        "v": [
            {"kind": "thinking", "value": "The tests import x; run them first."},
            {"value": "Running the tests.", "supportHtml": False},
            {"kind": "mcpServersStarting", "didStartServerIds": []},
            TERMINAL,
            {"value": "They fail in x.py."},
            READ,
            {"kind": "inlineReference", "inlineReference": {"fsPath": "/tmp/x.py"}},
            {
                "kind": "textEditGroup",
                "uri": {"fsPath": "/tmp/x.py", "scheme": "file"},
                "edits": [[{"text": "return 1  # été\n", "range": {"startLineNumber": 3}}]],
                "done": True,
            },
            {"kind": "warning", "content": {"value": "You are close to the rate limit."}},
            {"value": "Fixed: x.py returns 1 now."},
        ],
    },
    "{not json",
    {"kind": 1, "k": ["requests", 0, "modelState"], "v": {"value": 1, "completedAt": T0 + 12000}},
    {
        "kind": 2,
        "k": ["requests"],
        "v": [_request("req-2", "And the docs?", T0 + 20000)],
    },
    {
        "kind": 2,
        "k": ["requests", 1, "response"],
        "v": [
            {"kind": "autoModeResolution", "resolvedModel": "gpt-5-mini"},
            {"value": "Draft that will be replaced"},
        ],
    },
    {"kind": 2, "k": ["requests", 1, "response"], "i": 1, "v": [{"value": "Updating the docs…"}]},
    {"kind": 1, "k": ["requests", 1, "modelState"], "v": {"value": 2, "completedAt": T0 + 23000}},
    {"kind": 1, "k": ["requests", 1, "result"], "v": {"details": "Cancelled by the user"}},
    {"kind": 3, "k": ["customTitle"]},
]
DOCUMENT = {
    "version": 3,
    "responderUsername": "GitHub Copilot",
    "sessionId": DOC_ID,
    "creationDate": T0 - 60000,
    "requests": [
        _request(None, "Summarise the changelog", str((T0 - 50000) // 1000)),
        _request(
            "req-sys",
            "(follow-up the editor asked for)",
            T0 - 40000,
            isSystemInitiated=True,
            response=[
                {"value": "The changelog lists two fixes."},
                {"value": {"value": "not text"}},
            ],
        ),
        _request(
            "req-fail",
            "Now translate it",
            "2026-11-28T12:00:00.000Z",
            response=[{"kind": "thinking", "value": {"text": "Translate…"}}],
            modelState={"value": 3},
            result={"errorDetails": "Request failed: quota exceeded"},
        ),
    ],
}


def _home(root: Path) -> Path:
    home = root / "home"
    workspace = home / ".config" / "Code" / "User" / "workspaceStorage" / "9a8b7c6d5e4f"
    sessions = workspace / "chatSessions"
    sessions.mkdir(parents=True)
    (workspace / "workspace.json").write_text(
        json.dumps({"folder": "file:///tmp/tracesd-demo/copilot-rich"})
    )
    lines = [p if isinstance(p, str) else json.dumps(p) for p in PATCHES]
    (sessions / f"{LOG_ID}.jsonl").write_text("\n".join(lines) + "\n")
    (sessions / f"{DOC_ID}.json").write_text(json.dumps(DOCUMENT))
    return home


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = _home(tmp_path_factory.mktemp("copilot"))
    return asyncio.run(share_every_session(binary, home, only=[LOG_ID, DOC_ID]))


def _traces(shared: Shared, make_config: Callable[..., Config]) -> dict[str, Trace]:
    return captured(make_config(environ={"HOME": str(shared.home)}))


@pytest.mark.parametrize("session", [LOG_ID, DOC_ID], ids=["patch-log", "document"])
def test_a_rich_chat_session_reads_into_exactly_the_messages_the_cli_uploads(
    shared: Shared, make_config: Callable[..., Config], session: str
) -> None:
    theirs = shared.messages[session]
    mine = transcript.messages(_traces(shared, make_config)[session])
    assert_same_messages(mine, theirs)
    assert not any(SECRET in json.dumps(m) for m in theirs)


def test_the_rich_sessions_reach_every_kind_the_cli_reads(shared: Shared) -> None:
    uploaded = shared.messages[LOG_ID] + shared.messages[DOC_ID]
    kinds = {p["type"] for m in uploaded for p in m["parts"]}
    assert kinds == {"text", "thinking", "tool_call", "tool_result", "system_event", "error"}
    keys = {m["sourceKey"] for m in uploaded}
    assert "vscode.response:req-1:4" in keys  # text after a tool is a message of its own
    assert any("cl%C3%A9" in json.dumps(m) for m in uploaded)


def test_a_session_is_read_again_only_when_its_file_changed(
    shared: Shared, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """A re-read of an unchanged session returns nothing; after a request is added, the
    whole read includes it, and is what a read from scratch gives."""
    trace = _traces(shared, make_config)[LOG_ID]
    copy = tmp_path / f"{LOG_ID}.jsonl"
    assert trace.source_path is not None
    copy.write_bytes(Path(trace.source_path).read_bytes())
    trace = Trace(**{**trace.as_dict(), "source_path": str(copy)})
    reader = reader_for("copilot")
    assert reader is not None

    first = reader.read(trace, Position())
    assert first.whole
    assert len(first.events) == len(shared.messages[LOG_ID])
    again = reader.read(trace, first.position)
    assert again.events == []
    assert not again.whole

    added = {"kind": 2, "k": ["requests"], "v": [_request("req-3", "One more", T0 + 30000)]}
    with copy.open("a") as handle:
        handle.write(json.dumps(added) + "\n")
    later = reader.read(trace, again.position)
    assert later.whole
    assert [e.content for e in later.events][-1] == "One more"
    assert later.events[: len(first.events)] == first.events
    assert transcript.messages(trace)[-1]["textContent"] == "One more"
