"""Cline: classic VS Code tasks (ui_messages.json + taskHistory.json) and the SDK-era
`~/.cline/data` sessions (manifest + messages files, and sessions.db), on real files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, Daemon, git, make_repo
from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.cline import Cline
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import TraceMeta

SESSIONS = json.loads((FIXTURES / "expected.json").read_text())["sessions"]
EXPECTED = [s for s in SESSIONS if s["agent"] == "cline"]
EXT = "saoudrizwan.claude-dev"
T0 = 1795168200000  # 2026-11-20T09:50:00Z, a task id (Date.now())

MakeConfig = Callable[..., Config]


# ------------------------------------------------------------------------------ helpers


def cline(make_config: MakeConfig, home: Path, **environ: str) -> Cline:
    return Cline(make_config(environ={"HOME": str(home), **environ}))


def storage(home: Path, app: str = "Code") -> Path:
    return home / ".config" / app / "User" / "globalStorage" / EXT


def write_like_cline(path: Path, value: Any) -> Path:
    """Cline's atomicWriteFile: `<name>.tmp.<ms>.<rand>.json` next to it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{int(time.time() * 1000)}.x1y2z.json")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return path


def say(ts: int, kind: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "type": "say", "say": kind, "text": text, **extra}


def task(root: Path, task_id: int, prompt: str, *more: dict[str, Any]) -> Path:
    messages = [say(task_id, "task", prompt), *more]
    return write_like_cline(root / "tasks" / str(task_id) / "ui_messages.json", messages)


def history_item(task_id: int, prompt: str, cwd: str | None, ts: int | None = None) -> Any:
    item = {"id": str(task_id), "ts": ts or task_id, "task": prompt, "tokensIn": 10}
    return item if cwd is None else {**item, "cwdOnTaskInitialization": cwd}


def history(root: Path, *items: Any) -> Path:
    return write_like_cline(root / "state" / "taskHistory.json", list(items))


def api_history(root: Path, task_id: int, cwd_line: str) -> Path:
    def turn(*texts: str) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "text", "text": t} for t in texts]}

    def details(line: str) -> str:
        return f"<environment_details>\n# Current Time\nnow\n\n{line}\na.py\n</environment_details>"

    turns = [
        turn("<task>\nx\n</task>", details(cwd_line)),
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        turn("more", details("# Current Working Directory (/later/turn) Files")),
    ]
    return write_like_cline(root / "tasks" / str(task_id) / "api_conversation_history.json", turns)


def sdk_session(
    sessions: Path,
    sid: str,
    cwd: str,
    prompt: str | None,
    messages: list[dict[str, Any]] | None = None,
    **manifest: Any,
) -> Path:
    folder = sessions / sid
    body = {
        "version": 1,
        "session_id": sid,
        "source": "cli",
        "started_at": "2026-11-20T10:00:00.000Z",
        "status": "running",
        "cwd": cwd,
        "workspace_root": cwd,
        "metadata": {"title": "native title, not ours"},
        "messages_path": f"/home/other-machine/.cline/data/sessions/{sid}/{sid}.messages.json",
        **({"prompt": prompt} if prompt is not None else {}),
        **manifest,
    }
    write_like_cline(folder / f"{sid}.messages.json", messages_file(sid, messages or []))
    return write_like_cline(folder / f"{sid}.json", body)


def messages_file(sid: str, messages: list[dict[str, Any]], updated: str = "") -> Any:
    return {
        "version": 1,
        "updated_at": updated or "2026-11-20T10:05:00.000Z",
        "agent": "lead",
        "sessionId": sid,
        "messages": messages,
    }


def msg(role: str, text: str) -> dict[str, Any]:
    return {"id": f"m_{len(text)}", "role": role, "content": [{"type": "text", "text": text}]}


SESSIONS_DDL = """CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY, source TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, cwd TEXT NOT NULL,
    workspace_root TEXT NOT NULL, parent_session_id TEXT, is_subagent INTEGER NOT NULL DEFAULT 0,
    prompt TEXT, metadata_json TEXT, messages_path TEXT, updated_at TEXT NOT NULL)"""


def make_db(path: Path, rows: list[dict[str, Any]], *, wal: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SESSIONS_DDL)
        for row in rows:
            upsert(conn, **row)
    conn.close()
    return path


def upsert(conn: sqlite3.Connection, **row: Any) -> None:
    values = {
        "source": "cli",
        "pid": 1,
        "started_at": "2026-11-20T10:00:00.000Z",
        "status": "running",
        "cwd": "/w",
        "workspace_root": "/w",
        "updated_at": "2026-11-20T10:00:00.000Z",
        **row,
    }
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    conn.execute(
        f"INSERT OR REPLACE INTO sessions ({names}) VALUES ({marks})", list(values.values())
    )


def reason(adapter: Cline, path: Path) -> str | list[TraceMeta]:
    try:
        return adapter.parse(str(path)).traces
    except ParseError as exc:
        return exc.reason


@pytest.fixture
def fixture_home(tmp_path: Path) -> Path:
    home = tmp_path / "fixture-home"
    shutil.copytree(FIXTURES / "home", home)
    script = FIXTURES / "make_sqlite_fixtures.py"
    subprocess.run(
        [sys.executable, str(script), "--home", str(home), "--only", "cline"], check=True
    )
    return home


# ----------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("case", EXPECTED, ids=[c["id"] for c in EXPECTED])
def test_every_fixture_session_is_extracted_exactly(
    case: dict[str, Any], fixture_home: Path, make_config: MakeConfig
) -> None:
    adapter = cline(make_config, fixture_home)
    path = fixture_home / case["path"].removeprefix("home/")
    [meta] = adapter.parse(str(path)).traces
    assert (meta.trace_id, meta.agent_id, meta.directory, meta.title) == (
        case["session_id"],
        "cline",
        case["cwd"],
        case["title"],
    )
    assert (meta.created, meta.timestamp) == (to_ms(case["created"]), to_ms(case["updated"]))
    assert meta.source_path == str(path)


def test_fixture_history_and_store_agree_with_the_session_files(
    fixture_home: Path, make_config: MakeConfig
) -> None:
    """taskHistory.json and sessions.db name the same traces, cwds and titles."""
    adapter = cline(make_config, fixture_home)
    classic = storage(fixture_home)
    [listed] = adapter.parse(str(classic / "state" / "taskHistory.json")).traces
    assert (listed.trace_id, listed.directory, listed.preview) == (
        "1795168200000",
        "/tmp/tracesd-demo/cline",
        None,  # never overwrites the transcript's latest message
    )
    assert listed.source_path == str(classic / "tasks" / "1795168200000" / "ui_messages.json")
    assert listed.timestamp == to_ms("2026-11-20T09:50:31.500Z")

    data = fixture_home / ".cline" / "data"
    [row] = adapter.parse(str(data / "db" / "sessions.db")).traces
    [manifest] = adapter.parse(
        str(data / "sessions" / "1795168500000_k3v9q" / "1795168500000_k3v9q.json")
    ).traces
    assert (row.trace_id, row.directory, row.title, row.created, row.timestamp) == (
        manifest.trace_id,
        manifest.directory,
        manifest.title,
        manifest.created,
        manifest.timestamp,
    )
    assert row.source_path == manifest.source_path
    assert row.preview is None
    assert manifest.preview == "Annotated parse_line and parse_file; mypy passes."


# -------------------------------------------------------------------- roots and matches


def test_default_roots_cover_every_editor_and_the_cline_data_dir(
    make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    roots = adapter.roots()
    for app in ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf"):
        assert str(storage(home, app) / "tasks") in roots
        assert str(storage(home, app) / "state") in roots
    data = home / ".cline" / "data"
    for sub, depth in (("tasks", 2), ("state", 1), ("sessions", 2), ("db", 1)):
        assert str(data / sub) in roots
        assert adapter.depth(str(data / sub)) == depth
    # never the whole globalStorage (or the extension's checkpoints)
    assert not [r for r in roots if r.endswith(("globalStorage", EXT, "checkpoints"))]


def test_macos_roots_live_under_application_support(
    make_config: MakeConfig, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    roots = cline(make_config, home).roots()
    support = home / "Library" / "Application Support"
    assert str(support / "Code" / "User" / "globalStorage" / EXT / "tasks") in roots
    assert str(support / "Cursor" / "User" / "globalStorage" / EXT / "state") in roots
    assert str(home / ".cline" / "data" / "sessions") in roots
    assert not [r for r in roots if "/.config/" in r]


def test_cline_env_vars_move_the_data_sessions_and_db_dirs(
    make_config: MakeConfig, home: Path, tmp_path: Path
) -> None:
    roots = cline(make_config, home, CLINE_DIR=str(tmp_path / "cd")).roots()
    assert {str(tmp_path / "cd" / "data" / s) for s in ("sessions", "db", "tasks")} <= set(roots)
    roots = cline(
        make_config,
        home,
        CLINE_DIR=str(tmp_path / "cd"),
        CLINE_DATA_DIR=str(tmp_path / "dd"),
        CLINE_SESSION_DATA_DIR=str(tmp_path / "ss"),
        CLINE_DB_DATA_DIR=str(tmp_path / "db"),
    ).roots()
    assert {str(tmp_path / p) for p in ("ss", "db", "dd/tasks", "dd/state")} <= set(roots)
    assert not [r for r in roots if "/cd/" in r or r.endswith("/dd/sessions")]


def test_a_session_under_an_env_override_is_read(
    make_config: MakeConfig, home: Path, tmp_path: Path
) -> None:
    adapter = cline(make_config, home, CLINE_SESSION_DATA_DIR=str(tmp_path / "ss"))
    path = sdk_session(tmp_path / "ss", "1795170000000_abcde", "/w/env", "From the env dir")
    assert adapter.matches(os.path.relpath(path, tmp_path / "ss"))
    [meta] = adapter.parse(str(path)).traces
    assert (meta.directory, meta.title) == ("/w/env", "From the env dir")


def test_config_root_override_is_laid_out_like_a_data_dir(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    override = tmp_path / "elsewhere"
    adapter = Cline(make_config(agents__roots={"cline": str(override)}))
    assert set(adapter.roots()) == {str(override / s) for s in ("tasks", "state", "sessions", "db")}


@pytest.mark.parametrize(
    "rel",
    [
        "1795168200000/ui_messages.json",
        "1795168200000/claude_messages.json",
        "taskHistory.json",
        "1795168500000_k3v9q/1795168500000_k3v9q.json",
        "1795168500000_k3v9q/1795168500000_k3v9q.messages.json",
        "sessions.db",
        "sessions.db-wal",
        "sessions.db-journal",
    ],
)
def test_session_files_and_stores_match(rel: str, config: Config) -> None:
    assert Cline(config).matches(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "1795168200000/ui_messages.json.tmp.1795168200412.k3v9q.json",  # atomicWriteFile
        "taskHistory.json.tmp.1795168200412.k3v9q.json",
        "1795168200000/api_conversation_history.json",
        "1795168200000/task_metadata.json",
        "1795168200000/context_history.json",
        "1795168500000_k3v9q/1795168500000_k3v9q.compaction.json",
        "1795168500000_k3v9q/1795168500000_k3v9q.log",
        "1795168500000_k3v9q/reviewer.messages.json",  # a sub-agent's transcript
        "1795168500000_k3v9q/coder__t1a2b3.messages.json",  # a teammate's task
        "sessions.db-shm",
        "other.db",
        "ui_messages.json",
        "/ui_messages.json",
        "a/b/ui_messages.json",
    ],
)
def test_temp_side_and_subagent_files_never_match(rel: str, config: Config) -> None:
    assert not Cline(config).matches(rel)


# ------------------------------------------------------------------------------ classic


def test_task_seen_before_its_history_entry_gets_its_cwd_from_the_history(
    make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    root = storage(home)
    path = task(root, T0, "Write the docs", say(T0 + 5000, "text", "On it."))
    [early] = adapter.parse(str(path)).traces
    assert (early.trace_id, early.directory, early.title) == (str(T0), None, "Write the docs")

    # the history lands: it yields the task, with its cwd, and the transcript now has it
    index = history(root, history_item(T0, "Write the docs", "/w/docs", T0 + 5000))
    [listed] = adapter.parse(str(index)).traces
    assert (listed.trace_id, listed.directory, listed.source_path) == (
        str(T0),
        "/w/docs",
        str(path),
    )
    [later] = adapter.parse(str(path)).traces
    assert later.directory == "/w/docs"
    assert listed.timestamp == later.timestamp == T0 + 5000


def test_history_is_reread_when_it_changes(make_config: MakeConfig, home: Path) -> None:
    adapter = cline(make_config, home)
    root = storage(home)
    path = task(root, T0, "first")
    history(root, history_item(T0 + 1, "other", "/w/other"))
    assert adapter.parse(str(path)).traces[0].directory is None
    history(root, history_item(T0 + 1, "other", "/w/other"), history_item(T0, "first", "/w/a"))
    assert adapter.parse(str(path)).traces[0].directory == "/w/a"


@pytest.mark.parametrize(
    ("line", "cwd"),
    [
        ("# Current Working Directory (/w/from api) Files", "/w/from api"),
        ("# Current Working Directory (Primary: /w/multi) Files", "/w/multi"),
        ('# Current Working Directory (/w/q"uo\\te) Files', '/w/q"uo\\te'),
        ("# Current Working Directory (not-a-path) Files", None),
    ],
)
def test_without_a_history_entry_the_cwd_comes_from_the_first_api_turn(
    line: str, cwd: str | None, make_config: MakeConfig, home: Path
) -> None:
    root = storage(home)
    path = task(root, T0, "x")
    api_history(root, T0, line)
    [meta] = cline(make_config, home).parse(str(path)).traces
    assert meta.directory == cwd


def test_last_activity_and_preview_follow_cline_not_resume_prompts(
    make_config: MakeConfig, home: Path
) -> None:
    question = json.dumps({"question": "Which file?", "options": ["a", "b"]})
    path = task(
        storage(home),
        T0,
        "  Fix\n the   bug  ",
        say(T0 + 1000, "api_req_started", json.dumps({"request": "<task>", "cost": 0.1})),
        {"ts": T0 + 2000, "type": "ask", "ask": "followup", "text": question},
        say(T0 + 3000, "text", "half a thought", partial=True),
        {"ts": T0 + 9000, "type": "ask", "ask": "resume_task"},
    )
    [meta] = cline(make_config, home).parse(str(path)).traces
    assert (meta.title, meta.preview) == ("Fix the bug", "Which file?")
    assert (meta.created, meta.timestamp) == (T0, T0 + 3000)


def test_a_rewrite_by_rename_keeps_one_trace(make_config: MakeConfig, home: Path) -> None:
    adapter = cline(make_config, home)
    path = task(storage(home), T0, "Keep me")
    [before] = adapter.parse(str(path)).traces
    task(storage(home), T0, "Keep me", say(T0 + 60_000, "completion_result", "Done."))
    [after] = adapter.parse(str(path)).traces
    assert before.trace_id == after.trace_id == str(T0)
    assert (after.preview, after.timestamp) == ("Done.", T0 + 60_000)
    assert [p.name for p in path.parent.iterdir()] == ["ui_messages.json"]  # no temp left


def test_legacy_claude_messages_is_read_unless_migrated(
    make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    legacy = write_like_cline(
        storage(home) / "tasks" / str(T0) / "claude_messages.json", [say(T0, "task", "old")]
    )
    assert adapter.parse(str(legacy)).traces[0].title == "old"
    task(storage(home), T0, "old")
    assert adapter.parse(str(legacy)).traces == []


def test_a_task_without_messages_yet_is_not_a_trace(make_config: MakeConfig, home: Path) -> None:
    path = write_like_cline(storage(home) / "tasks" / str(T0) / "ui_messages.json", [])
    assert cline(make_config, home).parse(str(path)).traces == []


def test_a_large_transcript_is_read_in_part(make_config: MakeConfig, home: Path) -> None:
    """A 9 MB ui_messages.json: title from its head, last activity and preview from its tail."""
    big = [say(T0 + i, "text", "x" * 100_000) for i in range(1, 91)]
    path = task(storage(home), T0, "The big one", *big, say(T0 + 500, "completion_result", "Fin."))
    assert path.stat().st_size > 8 * 1024 * 1024
    [meta] = cline(make_config, home).parse(str(path)).traces
    assert (meta.title, meta.preview, meta.timestamp) == ("The big one", "Fin.", T0 + 500)


# ------------------------------------------------------------------------------- SDK era


def test_sdk_title_is_the_prompt_and_files_resolve_next_to_the_manifest(
    make_config: MakeConfig, home: Path
) -> None:
    sessions = home / ".cline" / "data" / "sessions"
    sid = "1795170000000_abcde"
    path = sdk_session(
        sessions, sid, "/w/sdk", "Add types", [msg("user", "Add types"), msg("assistant", "Added.")]
    )
    # a messages file at the absolute path the manifest names must not be read
    elsewhere = home / "other" / f"{sid}.messages.json"
    write_like_cline(
        elsewhere, messages_file(sid, [msg("assistant", "WRONG")], "2030-01-01T00:00:00Z")
    )
    manifest = json.loads(path.read_text()) | {"messages_path": str(elsewhere)}
    write_like_cline(path, manifest)
    [meta] = cline(make_config, home).parse(str(path)).traces
    assert (meta.trace_id, meta.title, meta.preview) == (sid, "Add types", "Added.")
    assert meta.timestamp == to_ms("2026-11-20T10:05:00.000Z")


def test_sdk_fork_without_prompt_takes_the_first_user_message(
    make_config: MakeConfig, home: Path
) -> None:
    sessions = home / ".cline" / "data" / "sessions"
    envelope = "<environment_details>\n# Current Mode\nACT\n</environment_details>"
    blocks = [
        {"type": "text", "text": "<task>\nRefactor the loader\n</task>"},
        {"type": "text", "text": envelope},
        {"type": "file", "path": "/w/a.py", "content": "print()"},
    ]
    messages = [{"id": "m1", "role": "user", "content": blocks}, msg("assistant", "Sure.")]
    path = sdk_session(
        sessions,
        "1795170000000_fork1",
        "/w/sdk",
        None,
        messages,
        metadata={"title": "Refactor the loader (fork)", "fork": {"forkedFromSessionId": "x"}},
        ended_at="2026-11-20T10:30:00.000Z",
    )
    [meta] = cline(make_config, home).parse(str(path)).traces
    assert meta.title == "Refactor the loader"
    assert meta.timestamp == to_ms("2026-11-20T10:30:00.000Z")


def test_sdk_messages_file_before_its_manifest_waits_for_it(
    make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    folder = home / ".cline" / "data" / "sessions" / "1795170000000_early"
    messages = write_like_cline(
        folder / "1795170000000_early.messages.json", messages_file("1795170000000_early", [])
    )
    assert adapter.parse(str(messages)).traces == []
    manifest = sdk_session(folder.parent, "1795170000000_early", "/w/e", "Hello")
    [via_messages] = adapter.parse(str(messages)).traces
    [via_manifest] = adapter.parse(str(manifest)).traces
    assert via_messages == via_manifest
    assert via_messages.source_path == str(manifest)


def test_sdk_half_written_messages_file(make_config: MakeConfig, home: Path) -> None:
    """The manifest still reads (its prompt stands in); the messages file itself waits."""
    adapter = cline(make_config, home)
    manifest = sdk_session(home / "s", "1795170000000_half1", "/w/h", "Prompt here")
    messages = manifest.with_name("1795170000000_half1.messages.json")
    messages.write_text(json.dumps(messages_file("x", [msg("user", "y")]))[:50])
    assert reason(adapter, messages) == "incomplete"
    [meta] = adapter.parse(str(manifest)).traces
    assert (meta.title, meta.preview) == ("Prompt here", "Prompt here")


def test_sdk_sub_sessions_are_not_traces(make_config: MakeConfig, home: Path) -> None:
    sid = "1795170000000_root1__reviewer"
    path = sdk_session(home / "s", sid, "/w", "sub")
    assert cline(make_config, home).parse(str(path)).traces == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02garbage\x00", "binary"),
        (b'[{"ts": 1795168200000, "type": "say", "say": "ta', "incomplete"),  # mid-rewrite
        (None, "malformed"),  # the wrong shape for each file
    ],
)
def test_bad_transcripts_histories_manifests_and_messages_say_why(
    body: bytes | None, why: str, make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    root = storage(home)
    manifest = home / "s" / "1795170000000_bad01" / "1795170000000_bad01.json"
    files = {
        root / "tasks" / str(T0) / "ui_messages.json": b'{"a": 1}',
        root / "state" / "taskHistory.json": b'{"a": 1}',
        manifest: b"[1, 2, 3]",
        manifest.with_name("1795170000000_bad01.messages.json"): b"[1, 2, 3]",
    }
    for path, wrong_shape in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wrong_shape if body is None else body)
    *others, messages = files
    for path in others:
        assert reason(adapter, path) == why, path
    manifest.write_text(json.dumps({"session_id": "1795170000000_bad01", "cwd": "/w"}))
    assert reason(adapter, messages) == why


def test_vanished_files_are_vanished(make_config: MakeConfig, home: Path) -> None:
    adapter = cline(make_config, home)
    for name in ("ui_messages.json", "taskHistory.json", "sessions.db"):
        assert reason(adapter, home / "gone" / name) == "vanished"


# ----------------------------------------------------------------------------- sessions.db


def db_path(home: Path) -> Path:
    return home / ".cline" / "data" / "db" / "sessions.db"


def test_store_skips_subagents_and_teammates(make_config: MakeConfig, home: Path) -> None:
    path = make_db(
        db_path(home),
        [
            {"session_id": "1795170000000_root1", "prompt": "Root"},
            {"session_id": "1795170000000_root1__helper", "is_subagent": 1, "prompt": "Sub"},
            {"session_id": "1795170000001_child", "parent_session_id": "x", "prompt": "Child"},
            {"session_id": "1795170000000_root1__teamtask__a__b", "prompt": "Team"},
        ],
    )
    metas = cline(make_config, home).parse(str(path)).traces
    assert [(m.trace_id, m.title) for m in metas] == [("1795170000000_root1", "Root")]


def test_store_change_rereads_only_the_sessions_whose_stamp_moved(
    make_config: MakeConfig, home: Path
) -> None:
    adapter = cline(make_config, home)
    path = make_db(
        db_path(home),
        [
            {"session_id": "1795170000000_aaaaa", "prompt": "A"},
            {"session_id": "1795170000000_bbbbb", "prompt": "B"},
        ],
    )
    first = {m.trace_id: m for m in adapter.parse(str(path)).traces}
    assert {m.title for m in first.values()} == {"A", "B"}
    with sqlite3.connect(path) as conn:
        # A changes behind its stamp (never happens in Cline): proof it is not re-read
        conn.execute("UPDATE sessions SET prompt = 'A2' WHERE session_id = '1795170000000_aaaaa'")
        upsert(
            conn, session_id="1795170000000_bbbbb", prompt="B2", updated_at="2026-11-20T11:00:00Z"
        )
        upsert(conn, session_id="1795170000000_ccccc", prompt="C")
    conn.close()
    second = {m.trace_id: m for m in adapter.parse(str(path)).traces}
    assert {k: m.title for k, m in second.items()} == {
        "1795170000000_aaaaa": "A",
        "1795170000000_bbbbb": "B2",
        "1795170000000_ccccc": "C",
    }
    assert second["1795170000000_bbbbb"].timestamp == to_ms("2026-11-20T11:00:00Z")
    # an unchanged session leaves its last activity to its messages file
    assert second["1795170000000_aaaaa"].timestamp is None


def test_store_locked_by_its_agent_fails_fast_and_reads_after(
    make_config: MakeConfig, fixture_home: Path
) -> None:
    path = db_path(fixture_home)
    adapter = cline(make_config, fixture_home)
    before = path.read_bytes()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        outcome: list[Any] = []
        reader = threading.Thread(target=lambda: outcome.append(reason(adapter, path)))
        reader.start()
        reader.join(5)
        assert not reader.is_alive()
        assert outcome == ["locked"]
        assert time.monotonic() - started < 2
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    [meta] = adapter.parse(str(path)).traces
    assert meta.trace_id == "1795168500000_k3v9q"
    assert path.read_bytes() == before  # read-only: nothing written, nothing left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["sessions.db"]


def test_wal_file_maps_to_its_store(make_config: MakeConfig, home: Path) -> None:
    path = make_db(db_path(home), [], wal=True)
    holder = sqlite3.connect(path)  # keeps the -wal file alive, like a running Cline
    try:
        upsert(holder, session_id="1795170000000_walwa", prompt="In the WAL")
        holder.commit()
        wal = Path(f"{path}-wal")
        assert wal.exists()
        [meta] = cline(make_config, home).parse(str(wal)).traces
        assert (meta.trace_id, meta.title) == ("1795170000000_walwa", "In the WAL")
    finally:
        holder.close()


def test_store_without_the_table_or_with_an_old_schema(make_config: MakeConfig, home: Path) -> None:
    adapter = cline(make_config, home)
    path = db_path(home)
    path.parent.mkdir(parents=True)
    sqlite3.connect(path).close()
    assert adapter.parse(str(path)).traces == []
    path.unlink()
    with sqlite3.connect(path) as conn:  # before the legacy migrations added columns
        conn.execute(
            "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, started_at TEXT, cwd TEXT,"
            " prompt TEXT, updated_at TEXT)"
        )
        conn.execute(
            "INSERT INTO sessions VALUES ('1795170000000_old01', '2026-11-20T10:00:00Z', '/w/o',"
            " 'Old', '2026-11-20T10:01:00Z')"
        )
    conn.close()
    [meta] = adapter.parse(str(path)).traces
    assert (meta.directory, meta.title, meta.timestamp) == (
        "/w/o",
        "Old",
        to_ms("2026-11-20T10:01:00Z"),
    )


def test_store_that_is_not_a_database_is_malformed(make_config: MakeConfig, home: Path) -> None:
    path = db_path(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"definitely not sqlite" * 100)
    assert reason(cline(make_config, home), path) == "malformed"


# ------------------------------------------------------------------------------ end to end


def test_daemon_captures_new_cline_sessions_with_their_git_context(
    daemons: Callable[..., Daemon], home: Path, tmp_path: Path
) -> None:
    """A classic task whose cwd arrives with the history written after it, and an SDK
    session: both stored with the repository's remote, branch and commit."""
    for sub in ("tasks", "state"):
        (storage(home) / sub).mkdir(parents=True)
    (home / ".cline" / "data" / "sessions").mkdir(parents=True)
    daemon = daemons(home)
    daemon.wait_ready()
    repo = make_repo(tmp_path / "repo", remote="https://github.com/acme/cline.git")
    head = git(repo, "rev-parse", "HEAD")
    root = storage(home)
    task(root, T0, "Classic task", say(T0 + 100, "text", "ok"))
    row = daemon.row(str(T0))
    assert (row["title"], row["directory"]) == ("Classic task", None)
    history(root, history_item(T0, "Classic task", str(repo), T0 + 100))
    deadline = time.monotonic() + 10
    while daemon.row(str(T0))["directory"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    row = daemon.row(str(T0))
    assert (row["directory"], row["git_remote_url"], row["git_branch"], row["git_ref"]) == (
        str(repo),
        "https://github.com/acme/cline",
        "main",
        head,
    )

    sid = "1795170000000_e2e01"
    sdk_session(home / ".cline" / "data" / "sessions", sid, str(repo), "SDK task")
    row = daemon.row(sid)
    assert (row["title"], row["directory"], row["git_branch"], row["git_ref"]) == (
        "SDK task",
        str(repo),
        "main",
        head,
    )
