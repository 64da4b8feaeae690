"""OpenCode: sessions as rows of `opencode.db` (>= 1.2.0) and as the legacy JSON tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, Daemon, git, make_repo, query, write_atomic
from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.opencode import OpenCode
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import TraceMeta

T0 = 1795168800000  # 2026-11-20T10:00:00.000Z
PLACEHOLDER = "New session - 2026-11-20T10:00:00.000Z"

SCHEMA = [
    """CREATE TABLE project (id TEXT PRIMARY KEY, worktree TEXT NOT NULL, vcs TEXT,
        name TEXT, time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL,
        sandboxes TEXT NOT NULL DEFAULT '[]')""",
    """CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, parent_id TEXT,
        slug TEXT NOT NULL DEFAULT '', directory TEXT NOT NULL, title TEXT NOT NULL,
        version TEXT NOT NULL DEFAULT '1.17.13', cost REAL DEFAULT 0 NOT NULL,
        tokens_input INTEGER DEFAULT 0 NOT NULL, time_created INTEGER NOT NULL,
        time_updated INTEGER NOT NULL, time_archived INTEGER)""",
    "CREATE INDEX session_parent_idx ON session (parent_id)",
    """CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
        time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX message_session_time_created_id_idx ON message (session_id, time_created, id)",
    """CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT NOT NULL,
        session_id TEXT NOT NULL, time_created INTEGER NOT NULL,
        time_updated INTEGER NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX part_message_id_id_idx ON part (message_id, id)",
    "CREATE INDEX part_session_idx ON part (session_id)",
]


@pytest.fixture
def data(home: Path) -> Path:
    path = home / ".local" / "share" / "opencode"
    (path / "storage" / "session").mkdir(parents=True)
    return path


@pytest.fixture
def adapter(make_config: Callable[..., Config]) -> OpenCode:
    return OpenCode(make_config())


# -------------------------------------------------------------------- writing stores


def open_store(path: Path, *, wal: bool = True, schema: list[str] = SCHEMA) -> sqlite3.Connection:
    """A store as OpenCode creates it (WAL mode), schema included."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # a test's store need not survive a power cut
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in schema:
        conn.execute(statement)
    return conn


class Turns:
    """Messages and parts of one session, with ascending ids and times."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.messages: list[tuple[str, int, dict[str, Any]]] = []
        self.parts: list[tuple[str, str, int, dict[str, Any] | str]] = []

    def message(self, role: str, *parts: dict[str, Any] | str) -> Turns:
        n = len(self.messages)
        mid = f"msg_{T0 + 1000 * n:012x}{self.sid[-6:]}{n:08d}"
        at = T0 + 1000 * (n + 1)
        self.messages.append((mid, at, {"role": role, "time": {"created": at}}))
        for i, part in enumerate(parts):
            self.parts.append((f"prt_{T0 + 1000 * n:012x}{self.sid[-6:]}{i:08d}", mid, at, part))
        return self


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def add_session(
    conn: sqlite3.Connection,
    sid: str,
    directory: str = "/w/app",
    prompt: str | None = "Fix the flaky uploader test",
    *,
    reply: str | None = "The bucket name is shared across workers.",
    parent: str | None = None,
    title: str = PLACEHOLDER,
    updated: int = T0 + 60_000,
    turns: Turns | None = None,
) -> None:
    if turns is None:
        turns = Turns(sid)
        if prompt is not None:
            turns.message("user", text(prompt))
        if reply is not None:
            turns.message("assistant", {"type": "tool", "tool": "bash"}, text(reply))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT OR IGNORE INTO project (id, worktree, time_created, time_updated)"
        " VALUES ('p1', '/w', ?, ?)",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO session (id, project_id, parent_id, directory, title, time_created,"
        " time_updated) VALUES (?, 'p1', ?, ?, ?, ?, ?)",
        (sid, parent, directory, title, T0, updated),
    )
    for mid, at, message in turns.messages:
        conn.execute(
            "INSERT INTO message VALUES (?, ?, ?, ?, ?)", (mid, sid, at, at, json.dumps(message))
        )
    for pid, mid, at, part in turns.parts:
        body = part if isinstance(part, str) else json.dumps(part)
        conn.execute("INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)", (pid, mid, sid, at, at, body))
    conn.execute("COMMIT")


def store_with(data: Path, *sids: str, wal: bool = True) -> tuple[Path, sqlite3.Connection]:
    db = data / "opencode.db"
    conn = open_store(db, wal=wal)
    for sid in sids:
        add_session(conn, sid, prompt=f"prompt of {sid}")
    return db, conn


def by_id(metas: list[TraceMeta]) -> dict[str, TraceMeta]:
    return {m.trace_id: m for m in metas}


def reason(adapter: OpenCode, path: Path) -> str | None:
    try:
        adapter.parse(str(path))
    except ParseError as exc:
        return exc.reason
    return None


# ------------------------------------------------------------- writing the old tree


def legacy_session(
    data: Path,
    sid: str,
    directory: str | None = "/w/app",
    prompt: str | None = "Refactor the CSV exporter",
    *,
    reply: str | None = "Done: rows are streamed.",
    turns: Turns | None = None,
    project: str = "8f1e2d3c",
    **fields: Any,
) -> Path:
    """Message and part files, then the session file, each as OpenCode 1.1 writes them."""
    storage = data / "storage"
    if turns is None:
        turns = Turns(sid)
        if prompt is not None:
            turns.message("user", text(prompt))
        if reply is not None:
            turns.message("assistant", text(reply))
    for mid, _, message in turns.messages:
        (storage / "message" / sid).mkdir(parents=True, exist_ok=True)
        body = {"id": mid, "sessionID": sid, **message}
        (storage / "message" / sid / f"{mid}.json").write_text(json.dumps(body, indent=2))
    for pid, mid, _, part in turns.parts:
        (storage / "part" / mid).mkdir(parents=True, exist_ok=True)
        content = part if isinstance(part, str) else json.dumps({"id": pid, **part}, indent=2)
        (storage / "part" / mid / f"{pid}.json").write_text(content)
    session: dict[str, Any] = {
        "id": sid,
        "version": "1.1.40",
        "projectID": project,
        "directory": directory,
        "title": PLACEHOLDER,
        "time": {"created": T0, "updated": T0 + 41_000},
        **fields,
    }
    if directory is None:
        del session["directory"]
    path = storage / "session" / project / f"{sid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(session, indent=2))
    return path


# ------------------------------------------------------------------------ fixtures


EXPECTED = [
    s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] == "opencode"
]


@pytest.fixture
def fixture_home(tmp_path: Path) -> Path:
    home = tmp_path / "fixture-home"
    shutil.copytree(FIXTURES / "home" / ".local", home / ".local")
    script = FIXTURES / "make_sqlite_fixtures.py"
    args = ["--home", str(home), "--only", "opencode"]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    return home


@pytest.mark.parametrize("case", EXPECTED, ids=[s["id"] for s in EXPECTED])
def test_every_fixture_session_is_extracted_exactly(
    case: dict[str, Any], fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    adapter = OpenCode(make_config(environ={"HOME": str(fixture_home)}))
    path = fixture_home / case["path"].removeprefix("home/")
    [meta] = adapter.parse(str(path)).traces
    assert (meta.trace_id, meta.agent_id, meta.directory, meta.title) == (
        case["session_id"],
        case["agent"],
        case["cwd"],
        case["title"],
    )
    assert (meta.created, meta.timestamp) == (to_ms(case["created"]), to_ms(case["updated"]))
    assert meta.source_path == str(path)
    assert meta.agent_git is None


def test_fixture_previews_are_the_latest_reply(
    fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    adapter = OpenCode(make_config(environ={"HOME": str(fixture_home)}))
    data = fixture_home / ".local" / "share" / "opencode"
    [db] = adapter.parse(str(data / "opencode.db")).traces
    [legacy] = adapter.parse(str(next((data / "storage" / "session").rglob("ses_*.json")))).traces
    assert db.preview == "The test shares a temp bucket name across workers."
    assert (
        legacy.preview == "The exporter now yields rows through csv.writer without building a list."
    )


# --------------------------------------------------------------------- roots, matches


def test_roots_are_the_data_directory_and_the_legacy_session_tree(
    adapter: OpenCode, home: Path
) -> None:
    data = f"{home}/.local/share/opencode"
    assert adapter.roots() == (f"{data}/storage/session", data)
    # the data directory alone (not storage/, with its message and part trees)
    assert adapter.depth(data) == 1
    assert adapter.depth(f"{data}/storage/session") == 2


def test_xdg_data_home_moves_every_root(make_config: Callable[..., Config], tmp_path: Path) -> None:
    adapter = OpenCode(make_config(environ={"XDG_DATA_HOME": str(tmp_path / "xdg")}))
    data = f"{tmp_path}/xdg/opencode"
    assert adapter.roots() == (f"{data}/storage/session", data)


def test_macos_uses_the_same_xdg_paths(
    make_config: Callable[..., Config], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    adapter = OpenCode(make_config())
    assert adapter.roots()[1] == f"{home}/.local/share/opencode"


def test_config_override_names_the_data_directory(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    adapter = OpenCode(
        make_config(
            environ={"OPENCODE_DB": str(tmp_path / "elsewhere" / "x.db")},
            agents__roots={"opencode": str(tmp_path / "oc")},
        )
    )
    assert adapter.roots() == (f"{tmp_path}/oc/storage/session", f"{tmp_path}/oc")


def test_opencode_db_env_adds_the_store_it_names(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    db = tmp_path / "dbs" / "mine.sqlite"
    moved = OpenCode(make_config(environ={"OPENCODE_DB": str(db)}))
    assert moved.roots()[2] == str(tmp_path / "dbs")
    assert moved.depth(str(tmp_path / "dbs")) == 1
    assert moved.matches("mine.sqlite")
    assert moved.matches("mine.sqlite-wal")
    assert not moved.matches("mine.sqlite-shm")
    db.parent.mkdir()
    add_session(open_store(db), "ses_a")
    assert [m.trace_id for m in moved.parse(str(db) + "-wal").traces] == ["ses_a"]

    relative = OpenCode(make_config(environ={"OPENCODE_DB": "custom.db"}))
    assert len(relative.roots()) == 2  # below the data directory, already watched
    assert relative.matches("custom.db-wal")
    assert len(OpenCode(make_config(environ={"OPENCODE_DB": ":memory:"})).roots()) == 2


@pytest.mark.parametrize(
    "rel",
    [
        "opencode.db",
        "opencode.db-wal",
        "opencode.db-journal",
        "opencode-local.db",
        "opencode-dev.db-wal",
        "8f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6/ses_a0e4c9b17ffeZq8Lm2Nx4Rt6Vw.json",
        "global/ses_a0e4c9b17ffeZq8Lm2Nx4Rt6Vw.json",
    ],
)
def test_stores_and_session_files_match(adapter: OpenCode, rel: str) -> None:
    assert adapter.matches(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "opencode.db-shm",  # changes on every read, ours included
        "opencode.db.bak",
        "opencode.db-wal.tmp",
        "kilo.db",  # the Kilo Code fork, elsewhere anyway
        "auth.json",
        "storage/session/p/ses_a0e4c9b17ffe.json",  # below the data root: not watched there
        "p/ses_a0e4c9b17ffe.json.tmp",
        "p/.ses_a0e4c9b17ffe.json.swp",
        "p/ses_a0e4c9b17ffe.json.123.tmp.json",
        "p/ses_a0e4c9b17ffe.json~",
        "p/msg_5f1b3e2a8001.json",  # a message file, by its shape
        "p/sub/ses_a0e4c9b17ffe.json",
        "ses_a0e4c9b17ffe.json",
        "/ses_a0e4c9b17ffe.json",
    ],
)
def test_temp_and_side_files_do_not_match(adapter: OpenCode, rel: str) -> None:
    assert not adapter.matches(rel)


# ------------------------------------------------------------------------ SQLite store


def test_store_yields_every_top_level_session_and_skips_subagents(
    adapter: OpenCode, data: Path
) -> None:
    db, conn = store_with(data, "ses_b", "ses_a")
    add_session(conn, "ses_child", prompt="List the call sites", parent="ses_a")
    found = by_id(adapter.parse(str(db)).traces)
    assert set(found) == {"ses_a", "ses_b"}
    assert found["ses_a"].title == "prompt of ses_a"
    assert found["ses_a"].preview == "The bucket name is shared across workers."
    assert (found["ses_a"].created, found["ses_a"].timestamp) == (T0, T0 + 60_000)


def test_wal_file_is_read_as_its_store(adapter: OpenCode, data: Path) -> None:
    db, _ = store_with(data, "ses_a")
    assert (data / "opencode.db-wal").exists()
    [meta] = adapter.parse(str(data / "opencode.db-wal")).traces
    assert (meta.trace_id, meta.source_path) == ("ses_a", str(db))


def test_title_is_the_first_real_prompt_not_synthetic_context(
    adapter: OpenCode, data: Path
) -> None:
    db = data / "opencode.db"
    turns = (
        Turns("ses_a")
        .message("user", text("Called the Read tool: src/app.py", synthetic=True), {"type": "file"})
        .message("user", text("<file>...</file>", synthetic=True), text("Explain\n  this module"))
        .message("user", text("a later prompt"))
    )
    add_session(open_store(db), "ses_a", turns=turns)
    [meta] = adapter.parse(str(db)).traces
    assert meta.title == "Explain this module"
    assert meta.preview == "a later prompt"


def test_placeholder_title_is_no_title_and_a_real_native_title_stands_in(
    adapter: OpenCode, data: Path
) -> None:
    db = data / "opencode.db"
    conn = open_store(db)
    add_session(conn, "ses_new", prompt=None, reply=None)
    add_session(conn, "ses_named", prompt=None, reply=None, title="Flaky uploader test")
    add_session(
        conn, "ses_child_title", prompt=None, reply=None, title=PLACEHOLDER.replace("New", "Child")
    )
    found = by_id(adapter.parse(str(db)).traces)
    assert found["ses_new"].title is None
    assert found["ses_new"].directory == "/w/app"  # a trace already, titled later
    assert found["ses_child_title"].title is None
    assert found["ses_named"].title == "Flaky uploader test"


def test_older_schemas_without_optional_columns_still_read(adapter: OpenCode, data: Path) -> None:
    """No `directory`, no `parent_id`, no `time_updated`: the project's worktree stands in
    for the cwd, except the `global` project's `/`."""
    db = data / "opencode.db"
    conn = open_store(
        db,
        schema=[
            "CREATE TABLE project (id TEXT PRIMARY KEY, worktree TEXT)",
            "CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT, title TEXT,"
            " time_created INTEGER)",
        ],
    )
    conn.execute("INSERT INTO project VALUES ('p1', '/w/repo'), ('global', '/')")
    conn.execute(f"INSERT INTO session VALUES ('ses_a', 'p1', 'Old one', {T0})")
    conn.execute(f"INSERT INTO session VALUES ('ses_b', 'global', '{PLACEHOLDER}', {T0})")
    found = by_id(adapter.parse(str(db)).traces)
    assert (found["ses_a"].directory, found["ses_a"].title) == ("/w/repo", "Old one")
    assert (found["ses_a"].created, found["ses_a"].timestamp) == (T0, T0)
    assert (found["ses_b"].directory, found["ses_b"].title) == (None, None)


def test_rows_with_broken_json_are_passed_over_not_fatal(adapter: OpenCode, data: Path) -> None:
    db = data / "opencode.db"
    turns = Turns("ses_a").message("user", '{"type": "text", "te', text("the real prompt"))
    add_session(open_store(db), "ses_a", turns=turns)
    [meta] = adapter.parse(str(db)).traces
    assert meta.title == "the real prompt"


def test_a_second_read_reads_only_sessions_whose_stamp_moved(adapter: OpenCode, data: Path) -> None:
    db, conn = store_with(data, "ses_a", "ses_b")
    adapter.parse(str(db))
    # Edits that leave a session's stamp alone are not looked at...
    conn.execute(
        "UPDATE part SET data = json_set(data, '$.text', 'edited') WHERE session_id = ?", ("ses_a",)
    )
    # ...while a session that moved, and a new one, are read.
    conn.execute(
        "UPDATE part SET data = json_set(data, '$.text', 'edited') WHERE session_id = ?", ("ses_b",)
    )
    conn.execute("UPDATE session SET time_updated = time_updated + 1 WHERE id = 'ses_b'")
    add_session(conn, "ses_c", prompt="third")
    found = by_id(adapter.parse(str(db)).traces)
    assert {k: m.title for k, m in found.items()} == {
        "ses_a": "prompt of ses_a",
        "ses_b": "edited",
        "ses_c": "third",
    }
    conn.execute("DELETE FROM session WHERE id = 'ses_c'")
    assert set(by_id(adapter.parse(str(db)).traces)) == {"ses_a", "ses_b"}


def test_a_new_message_moves_the_stamp_even_when_the_session_row_does_not(
    adapter: OpenCode, data: Path
) -> None:
    db = data / "opencode.db"
    conn = open_store(db)
    add_session(conn, "ses_a", prompt=None, reply=None)
    assert adapter.parse(str(db)).traces[0].title is None
    turns = Turns("ses_a").message("user", text("now the prompt"))
    [(mid, at, message)] = turns.messages
    [(pid, _, _, part)] = turns.parts
    conn.execute(
        "INSERT INTO message VALUES (?, 'ses_a', ?, ?, ?)", (mid, at, at, json.dumps(message))
    )
    conn.execute(
        "INSERT INTO part VALUES (?, ?, 'ses_a', ?, ?, ?)", (pid, mid, at, at, json.dumps(part))
    )
    assert adapter.parse(str(db)).traces[0].title == "now the prompt"


def test_store_locked_by_its_agent_fails_fast_and_reads_once_released(
    adapter: OpenCode, data: Path
) -> None:
    db, _ = store_with(data, "ses_a", wal=False)
    agent = sqlite3.connect(db, isolation_level=None)
    agent.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    assert reason(adapter, db) == "locked"
    assert time.monotonic() - started < 1.0
    agent.execute("ROLLBACK")
    assert [m.trace_id for m in adapter.parse(str(db)).traces] == ["ses_a"]


def test_a_write_in_progress_neither_blocks_nor_shows(adapter: OpenCode, data: Path) -> None:
    """WAL: the agent mid-transaction; we read the last committed state at once."""
    db, conn = store_with(data, "ses_a")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE session SET time_updated = 1 WHERE id = 'ses_a'")
    started = time.monotonic()
    [meta] = adapter.parse(str(db)).traces
    assert time.monotonic() - started < 1.0
    assert meta.timestamp == T0 + 60_000
    conn.execute("COMMIT")


def test_reading_never_writes_the_store(adapter: OpenCode, data: Path) -> None:
    db, conn = store_with(data, "ses_a", wal=False)
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns
    adapter.parse(str(db))
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in data.iterdir()) == ["opencode.db", "storage"]


@pytest.mark.parametrize("schema", [[], SCHEMA[:1]], ids=["no-tables", "half-migrated"])
def test_store_not_migrated_yet_holds_no_sessions(
    adapter: OpenCode, data: Path, schema: list[str]
) -> None:
    """Created, its tables on the way: nothing yet, and nothing wrong."""
    db = data / "opencode.db"
    open_store(db, schema=schema).close()
    assert adapter.parse(str(db)).traces == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"this is not a database, just text\n" * 200, "malformed"),
        (bytes(range(256)) * 64, "malformed"),
    ],
    ids=["empty", "text", "binary"],
)
def test_a_store_that_is_not_one_says_why(
    adapter: OpenCode, data: Path, content: bytes, expected: str
) -> None:
    (data / "opencode.db").write_bytes(content)
    assert reason(adapter, data / "opencode.db") == expected


def test_a_truncated_store_is_malformed(adapter: OpenCode, data: Path) -> None:
    db, conn = store_with(data, *(f"ses_{i:03d}" for i in range(200)), wal=False)
    conn.close()
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    assert reason(adapter, db) == "malformed"


def test_a_store_of_another_program_is_malformed(adapter: OpenCode, data: Path) -> None:
    db = data / "opencode.db"
    open_store(db, schema=["CREATE TABLE notes (body TEXT)"]).close()
    assert reason(adapter, db) == "malformed"


def test_a_vanished_or_odd_store_says_why(adapter: OpenCode, data: Path) -> None:
    assert reason(adapter, data / "opencode.db-wal") == "vanished"
    os.mkfifo(data / "opencode-dev.db")
    assert reason(adapter, data / "opencode-dev.db") == "not_a_file"


# ------------------------------------------------------------------- legacy JSON tree


def test_legacy_session_reads_directory_prompt_and_latest_reply(
    adapter: OpenCode, data: Path
) -> None:
    path = legacy_session(data, "ses_a", "/w/app")
    [meta] = adapter.parse(str(path)).traces
    assert (meta.trace_id, meta.directory, meta.title) == (
        "ses_a",
        "/w/app",
        "Refactor the CSV exporter",
    )
    assert (meta.preview, meta.created, meta.timestamp) == (
        "Done: rows are streamed.",
        T0,
        T0 + 41_000,
    )
    assert meta.source_path == str(path)


def test_legacy_subagent_session_is_not_a_trace(adapter: OpenCode, data: Path) -> None:
    path = legacy_session(
        data, "ses_child", parentID="ses_a", title="Child session - 2026-11-20T10:00:00.000Z"
    )
    assert adapter.parse(str(path)).traces == []


def test_legacy_title_skips_synthetic_parts_and_placeholders(adapter: OpenCode, data: Path) -> None:
    turns = (
        Turns("ses_a")
        .message("user", text("editor context", synthetic=True))
        .message("assistant", text("ok"))
        .message("user", text("ignored", ignored=True), text("The actual ask"))
    )
    path = legacy_session(data, "ses_a", turns=turns)
    assert adapter.parse(str(path)).traces[0].title == "The actual ask"
    empty = legacy_session(data, "ses_b", prompt=None, reply=None)
    assert adapter.parse(str(empty)).traces[0].title is None


def test_legacy_parts_caught_half_written_are_passed_over(adapter: OpenCode, data: Path) -> None:
    turns = Turns("ses_a").message("user", text("the prompt")).message("assistant", '{"type":"te')
    path = legacy_session(data, "ses_a", turns=turns)
    [meta] = adapter.parse(str(path)).traces
    assert (meta.title, meta.preview) == ("the prompt", "the prompt")


def test_legacy_part_files_too_big_for_a_prompt_are_not_read(adapter: OpenCode, data: Path) -> None:
    attachment = {"type": "file", "url": "data:image/png;base64," + "A" * (2 * 1024 * 1024)}
    turns = Turns("ses_a").message("user", attachment, text("What is in this screenshot?"))
    path = legacy_session(data, "ses_a", turns=turns)
    assert adapter.parse(str(path)).traces[0].title == "What is in this screenshot?"


def test_legacy_directory_falls_back_to_the_project_worktree(adapter: OpenCode, data: Path) -> None:
    (data / "storage" / "project").mkdir()
    (data / "storage" / "project" / "8f1e2d3c.json").write_text(
        json.dumps({"id": "8f1e2d3c", "worktree": "/w/repo"})
    )
    (data / "storage" / "project" / "global.json").write_text(
        json.dumps({"id": "global", "worktree": "/"})
    )
    assert adapter.parse(str(legacy_session(data, "ses_a", None))).traces[0].directory == "/w/repo"
    orphan = legacy_session(data, "ses_b", None, project="global")
    assert adapter.parse(str(orphan)).traces[0].directory is None


def test_legacy_rewrite_keeps_one_trace_id_and_takes_the_update(
    adapter: OpenCode, data: Path
) -> None:
    """OpenCode rewrites the session file when its title or update time changes; the
    migrated copy in the store is the same trace."""
    path = legacy_session(data, "ses_a", prompt=None, reply=None)
    [before] = adapter.parse(str(path)).traces
    path = legacy_session(
        data, "ses_a", title="Refactor exporter", time={"created": T0, "updated": T0 + 90_000}
    )
    [after] = adapter.parse(str(path)).traces
    assert before.trace_id == after.trace_id == "ses_a"
    assert (before.title, after.title) == (None, "Refactor the CSV exporter")
    assert after.timestamp == T0 + 90_000
    db, _ = store_with(data, "ses_a")
    [migrated] = adapter.parse(str(db)).traces
    assert migrated.trace_id == after.trace_id


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b'{\n  "id": "ses_a",\n  "version": "1.1.40",\n  "dire', "incomplete"),
        (b"\x00\x01\x02\x03" * 64, "binary"),
        (b'["ses_a"]', "malformed"),
        (b'{"version": "1.1.40", "title": "no id"}', "malformed"),
    ],
    ids=["empty", "half-written", "binary", "not-an-object", "no-id"],
)
def test_a_broken_legacy_session_file_says_why(
    adapter: OpenCode, data: Path, content: bytes, expected: str
) -> None:
    path = data / "storage" / "session" / "p" / "ses_a.json"
    path.parent.mkdir()
    path.write_bytes(content)
    assert reason(adapter, path) == expected


def test_a_huge_legacy_session_file_is_read_only_in_part(adapter: OpenCode, data: Path) -> None:
    diffs = [{"file": f"f{i}.py", "before": "x" * 100_000, "after": "y"} for i in range(90)]
    path = legacy_session(data, "ses_a", summary={"diffs": diffs})
    assert path.stat().st_size > 8 * 1024 * 1024
    [meta] = adapter.parse(str(path)).traces
    assert (meta.trace_id, meta.directory, meta.created) == ("ses_a", "/w/app", T0)
    assert meta.title == "Refactor the CSV exporter"


# ------------------------------------------------------------------------ end to end


def wait_for_row(
    daemon: Daemon, trace_id: str, title: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The row once its title is in (a session is first seen before its prompt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(daemon.db, "SELECT * FROM traces WHERE id = ?", trace_id)
        if rows and rows[0]["title"] == title:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"{trace_id} not captured with its title:\n{daemon.log_path.read_text()}")


@pytest.fixture
def daemon(daemons: Callable[..., Daemon], home: Path, data: Path) -> Iterator[Daemon]:
    started = daemons(home)
    started.wait_ready()
    yield started
    assert started.stop() == 0


def test_sessions_started_while_the_daemon_runs_are_captured_with_git_context(
    daemon: Daemon, data: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", remote="https://github.com/acme/exporter.git")
    head = git(repo, "rev-parse", "HEAD")
    conn = open_store(data / "opencode.db")
    add_session(conn, "ses_db", str(repo), "Stream the CSV rows")
    # the old layout: the session file appears with its placeholder, then the prompt lands
    legacy = legacy_session(data, "ses_legacy", str(repo), prompt=None, reply=None)
    legacy_session(
        data,
        "ses_legacy",
        str(repo),
        "Add a --dry-run flag",
        time={"created": T0, "updated": T0 + 5000},
    )
    assert legacy.exists()

    for trace_id, title in (
        ("ses_db", "Stream the CSV rows"),
        ("ses_legacy", "Add a --dry-run flag"),
    ):
        row = wait_for_row(daemon, trace_id, title)
        assert (row["agent_id"], row["directory"]) == ("opencode", str(repo))
        assert (row["git_remote_url"], row["git_branch"], row["git_ref"]) == (
            "https://github.com/acme/exporter",
            "main",
            head,
        )
