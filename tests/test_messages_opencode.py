"""OpenCode's messages read as the real Traces CLI reads them: a session of `opencode.db`
(text, reasoning, tool calls completed and failed, a skill, a file, a synthetic part, step
token usage, a compaction with its summary, an error) and a legacy `storage/` session,
each compared message for message with what the CLI uploads; an unchanged session is not
read again, a new message is."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.cli_uploads import Shared, share_every_session
from tests.helpers import FIXTURES
from tests.tracescli import require_traces_cli
from tracesd.messages import transcript
from tracesd.messages.readers import Position
from tracesd.messages.readers.opencode import OpenCodeReader
from tracesd.models import Trace

pytestmark = pytest.mark.traces_cli

STORED = "ses_b1f5d9a03aafXr9Ko2Lp4Mq6Ns"
LEGACY = "ses_b1f5d9b14bbfYs0Lp3Mq5Nr7Ot"
SECRET = "sk-ant-" + "abcdefghijklmnopqrstuvwxyzabcd"
T0 = 1795170000000


def _ddl() -> list[str]:
    spec = importlib.util.spec_from_file_location("fixtures", FIXTURES / "make_sqlite_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.OPENCODE_DDL)


def _messages() -> list[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]]:
    """(message id, message, [(part id, part)]) of the stored session, in time order."""
    return [
        (
            "msg_a001",
            {"role": "user", "time": {"created": T0 + 100}},
            [
                ("prt_a001", {"type": "text", "text": f"Fix ü in the exporter, key {SECRET}"}),
                ("prt_a002", {"type": "text", "text": "<context/>", "synthetic": True}),
                ("prt_a003", {"type": "file", "text": "file body", "filename": "a.py"}),
            ],
        ),
        (
            "msg_a002",
            {
                "role": "assistant",
                "modelID": "claude-sonnet-4-5",
                "time": {"created": T0 + 200, "completed": T0 + 9000},
                "tokens": {"input": 10, "output": 5, "cache": {"read": 1, "write": 0}},
            },
            [
                ("prt_b001", {"type": "step-start"}),
                ("prt_b002", {"type": "reasoning", "text": "think", "time": {"start": T0 + 250}}),
                (
                    "prt_b003",
                    {
                        "type": "tool",
                        "tool": "bash",
                        "callID": "call_1",
                        "state": {
                            "status": "completed",
                            "input": {"command": "ls", "ключ": 1},
                            "output": "a.py",
                            "time": {"start": T0 + 300, "end": T0 + 400},
                        },
                    },
                ),
                (
                    "prt_b004",
                    {"type": "step-finish", "tokens": {"input": 7.9, "output": 3, "reasoning": 1}},
                ),
                (
                    "prt_b005",
                    {
                        "type": "tool",
                        "tool": "skill",
                        "callID": "call_2",
                        "state": {
                            "status": "error",
                            "input": {"name": " pdf "},
                            "metadata": {"dir": "/skills/pdf"},
                            "time": {"start": T0 + 500},
                        },
                    },
                ),
                ("prt_b006", {"type": "text", "text": "Done."}),
                ("prt_b007", {"type": "compaction", "auto": True}),
            ],
        ),
        (
            "msg_a003",
            {"role": "assistant", "summary": True, "parentID": "msg_a002", "modelID": "m-s"},
            [("prt_c001", {"type": "text", "text": "the summary"})],
        ),
        (
            "msg_a004",
            {
                "role": "assistant",
                "time": {"created": T0 + 9500},
                "error": {"name": "APIError", "message": "overloaded"},
            },
            [],
        ),
        ("msg_a005", {"role": "system", "time": {"created": T0 + 9600}}, []),
    ]


def _store(home: Path) -> Path:
    path = home / ".local" / "share" / "opencode" / "opencode.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        for statement in _ddl():
            conn.execute(statement)
        conn.execute(
            "INSERT INTO project (id, worktree, vcs, time_created, time_updated, sandboxes)"
            " VALUES ('p1', '/tmp/p', 'git', ?, ?, '[]')",
            (T0, T0),
        )
        conn.execute(
            "INSERT INTO session (id, project_id, slug, directory, title, version,"
            " time_created, time_updated) VALUES (?, 'p1', 's', '/tmp/p', 'Fix', '1.2.0', ?, ?)",
            (STORED, T0, T0 + 9600),
        )
        for n, (message_id, message, parts) in enumerate(_messages()):
            created = message.get("time", {}).get("created", T0 + 9000 + n)
            conn.execute(
                "INSERT INTO message (id, session_id, time_created, time_updated, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (message_id, STORED, created, created, json.dumps(message)),
            )
            for k, (part_id, part) in enumerate(parts):
                conn.execute(
                    "INSERT INTO part (id, message_id, session_id, time_created, time_updated,"
                    " data) VALUES (?, ?, ?, ?, ?, ?)",
                    (part_id, message_id, STORED, created + k, created + k, json.dumps(part)),
                )
    conn.close()
    return path


def _legacy(home: Path) -> Path:
    storage = home / ".local" / "share" / "opencode" / "storage"
    session = storage / "session" / "p2" / f"{LEGACY}.json"
    session.parent.mkdir(parents=True)
    times = {"created": T0, "updated": T0 + 5000}
    session.write_text(
        json.dumps({"id": LEGACY, "title": "Old", "directory": "/tmp/q", "time": times})
    )
    files: dict[str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]] = {
        "msg_Bb01": (
            {"role": "user", "time": {"created": T0 + 10}},
            [("prt_10a", {"type": "text", "text": "Hi"})],
        ),
        "msg_aa02": (
            {
                "role": "assistant",
                "time": {"created": T0 + 10},
                "modelID": "m1",
                "tokens": {"output": 2},
            },
            [
                ("prt_9b", {"type": "text", "text": "second by number"}),
                ("prt_10b", {"type": "reasoning", "text": "last"}),
                ("prt_2", {"type": "text", "text": "first"}),
            ],
        ),
    }
    for message_id, (message, parts) in files.items():
        folder = storage / "message" / LEGACY
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{message_id}.json").write_text(json.dumps({"id": message_id, **message}))
        part_dir = storage / "part" / message_id
        part_dir.mkdir(parents=True)
        for part_id, part in parts:
            (part_dir / f"{part_id}.json").write_text(json.dumps({"id": part_id, **part}))
    (storage / "part" / "msg_aa02" / "broken.json").write_text("{not json")
    return session


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("opencode") / "home"
    _store(root)
    _legacy(root)
    return root


@pytest.fixture(scope="module")
def shared(home: Path) -> Shared:
    return asyncio.run(share_every_session(require_traces_cli(), home, only=[STORED, LEGACY]))


def _trace(trace_id: str, source: Path) -> Trace:
    return Trace(id=trace_id, agent_id="opencode", source_path=str(source))


def test_a_stored_session_reads_into_the_messages_the_cli_uploads(
    shared: Shared, home: Path
) -> None:
    theirs = shared.messages[STORED]
    kinds = {m["parts"][0]["type"] for m in theirs}
    assert kinds >= {"text", "thinking", "tool_call", "tool_result", "error", "system_event"}
    assert any("tokenUsage" in m["parts"][0] for m in theirs)
    store = home / ".local" / "share" / "opencode" / "opencode.db"
    assert transcript.messages(_trace(STORED, store)) == theirs


def test_a_legacy_session_reads_into_the_messages_the_cli_uploads(
    shared: Shared, home: Path
) -> None:
    theirs = shared.messages[LEGACY]
    assert len(theirs) == 4
    source = (
        home / ".local" / "share" / "opencode" / "storage" / "session" / "p2" / f"{LEGACY}.json"
    )
    assert transcript.messages(_trace(LEGACY, source)) == theirs


def test_an_unchanged_session_is_not_read_again_and_a_new_message_is(tmp_path: Path) -> None:
    store = _store(tmp_path / "home")
    trace = _trace(STORED, store)
    reader = OpenCodeReader()
    first = reader.read(trace, Position())
    assert first.whole
    assert reader.read(trace, first.position).events == []
    with sqlite3.connect(store) as conn:
        message = {"role": "user", "time": {"created": T0 + 20000}}
        conn.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data)"
            " VALUES ('msg_z', ?, ?, ?, ?)",
            (STORED, T0 + 20000, T0 + 20000, json.dumps(message)),
        )
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)"
            " VALUES ('prt_z', 'msg_z', ?, ?, ?, ?)",
            (STORED, T0 + 20000, T0 + 20000, json.dumps({"type": "text", "text": "more"})),
        )
    conn.close()
    again = reader.read(trace, first.position)
    assert again.whole
    assert [e.content for e in again.events][-1] == "more"
    assert len(again.events) == len(first.events) + 1
