"""Cursor: the IDE's state.vscdb, agent transcripts and the CLI's store.db, read exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, git, make_repo, write_atomic
from tracesd.capture.adapters import _roots, _sqlite
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.cursor import Cursor
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import TraceMeta

EXPECTED = {
    s["id"]: s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] == "cursor"
}
T0 = 1_795_167_600_000  # 2026-11-20T09:40:00Z
KV = "CREATE TABLE IF NOT EXISTS {} (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)"
Chat = tuple[dict[str, Any], dict[str, dict[str, Any]]]


@pytest.fixture(autouse=True)
def _no_cursor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURSOR_CONFIG_DIR", raising=False)


def cursor(config: Config) -> Cursor:
    return Cursor(config)


def reason(adapter: Cursor, path: Path) -> str | list[TraceMeta]:
    try:
        return adapter.parse(str(path)).traces
    except ParseError as exc:
        return exc.reason


# -- builders ----------------------------------------------------------------------------


def chat(cid: str, cwd: str | None, *messages: tuple[int, str], **extra: Any) -> Chat:
    """A composer and its bubbles: messages are (1 user | 2 assistant, text)."""
    heads: list[dict[str, Any]] = [
        {"bubbleId": f"{cid}-b{i}", "type": kind} for i, (kind, _) in enumerate(messages)
    ]
    data: dict[str, Any] = {
        "_v": 17,
        "composerId": cid,
        "name": "New Chat",
        "createdAt": T0,
        "lastUpdatedAt": T0 + 60_000,
        "fullConversationHeadersOnly": heads,
        **extra,
    }
    if cwd is not None:
        data["workspaceIdentifier"] = {"id": "ws", "uri": {"fsPath": cwd, "scheme": "file"}}
    bubbles = {
        h["bubbleId"]: {"type": h["type"], "bubbleId": h["bubbleId"], "text": text}
        for h, (_, text) in zip(heads, messages, strict=True)
    }
    return data, bubbles


def user_dir(home: Path) -> Path:
    return home / ".config" / "Cursor" / "User"


def ide_store(home: Path, *chats: Chat, raw: Mapping[str, Any] | None = None) -> Path:
    path = user_dir(home) / "globalStorage" / "state.vscdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute(KV.format("ItemTable"))
        con.execute(KV.format("cursorDiskKV"))
        rows = dict(raw or {})
        for data, bubbles in chats:
            rows[f"composerData:{data['composerId']}"] = json.dumps(data)
            for bid, bubble in bubbles.items():
                rows[f"bubbleId:{data['composerId']}:{bid}"] = json.dumps(bubble)
        con.executemany("INSERT INTO cursorDiskKV VALUES (?, ?)", rows.items())
        con.commit()
    return path


def workspace(home: Path, ws: str, folder: str, listed: list[str] | None = None) -> Path:
    path = user_dir(home) / "workspaceStorage" / ws
    path.mkdir(parents=True, exist_ok=True)
    (path / "workspace.json").write_text(json.dumps({"folder": folder}))
    if listed is not None:
        with contextlib.closing(sqlite3.connect(path / "state.vscdb")) as con:
            con.execute(KV.format("ItemTable"))
            heads = {"allComposers": [{"type": "head", "composerId": c} for c in listed]}
            con.execute(
                "INSERT INTO ItemTable VALUES ('composer.composerData', ?)", (json.dumps(heads),)
            )
            con.commit()
    return path


def transcript(home: Path, slug: str, cid: str, lines: list[Any], ext: str = "jsonl") -> Path:
    path = home / ".cursor" / "projects" / slug / "agent-transcripts" / f"{cid}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(body)
    return path


def said(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "message": {"content": [{"type": "text", "text": text}]}}


def cli_store(home: Path, cwd: str, cid: str, *blobs: Any, head: Any = "default") -> Path:
    path = home / ".cursor" / "chats" / md5(cwd) / cid / "store.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, data BLOB)")
        con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        for blob in blobs:
            data = blob if isinstance(blob, bytes) else json.dumps(blob).encode()
            con.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha(data), data))
        if head == "default":
            head = {"agentId": cid, "name": "New Agent", "createdAt": T0}
        if head is not None:
            value = head if isinstance(head, str) else json.dumps(head).encode().hex()
            con.execute("INSERT OR REPLACE INTO meta VALUES ('0', ?)", (value,))
        con.commit()
    return path


def blob(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CountingSessions(_sqlite.Sessions):
    """Sessions that record which sessions each refresh had to read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    def refresh(self, database: str, stamps: Any, read: Any) -> list[TraceMeta]:
        def counted(ids: list[str]) -> Any:
            self.reads.append(sorted(ids))
            return read(ids)

        return super().refresh(database, stamps, counted)


# -- the fixtures of expected.json -------------------------------------------------------


@pytest.fixture
def fixture_home(tmp_path: Path) -> Path:
    """The fixture HOME with Cursor's two SQLite stores built (in-process: fast)."""
    home = tmp_path / "fixture-home"
    shutil.copytree(FIXTURES / "home", home)
    spec = importlib.util.spec_from_file_location("fixtures", FIXTURES / "make_sqlite_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.build_cursor_ide(home)
    script.build_cursor_cli(home)
    return home


@pytest.mark.parametrize("case", EXPECTED.values(), ids=list(EXPECTED))
def test_every_fixture_session_is_extracted_exactly(
    case: dict[str, Any], fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    config = make_config(environ={"HOME": str(fixture_home)})
    known = frozenset({"/tmp/tracesd-demo/cursor-cli"})
    path = fixture_home / case["path"].removeprefix("home/")
    found = cursor(config).parse(str(path), known).traces
    [meta] = [m for m in found if m.trace_id == case["session_id"]]
    ide = EXPECTED["cursor/ide-sqlite"]
    # the transcript has no times: the IDE store's composer gives them (both agree)
    created = case["created"] or ide["created"]
    updated = case.get("updated") or (ide["updated"] if "transcript" in case["id"] else None)
    assert (meta.agent_id, meta.directory, meta.title) == ("cursor", case["cwd"], case["title"])
    assert meta.created == to_ms(created)
    assert meta.timestamp == (to_ms(updated) if updated else os.stat(path).st_mtime_ns // 10**6)
    assert meta.source_path == str(path)


def test_transcript_and_ide_store_agree_on_all_but_the_source(
    fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    adapter = cursor(make_config(environ={"HOME": str(fixture_home)}))
    [from_ide] = adapter.parse(str(fixture_home / EXPECTED["cursor/ide-sqlite"]["path"][5:])).traces
    path = fixture_home / EXPECTED["cursor/agent-transcript"]["path"][5:]
    [from_transcript] = adapter.parse(str(path)).traces
    assert from_transcript == dataclasses.replace(from_ide, source_path=str(path))


# -- roots and matches -------------------------------------------------------------------


def test_roots_are_the_global_storage_dir_and_the_dot_cursor_trees(
    make_config: Callable[..., Config], home: Path, tmp_path: Path
) -> None:
    adapter = cursor(make_config(environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}))
    assert adapter.roots() == (
        f"{tmp_path}/xdg/Cursor/User/globalStorage",
        f"{home}/.config/Cursor/User/globalStorage",  # the editor may not share our XDG
        f"{home}/.cursor/projects",
        f"{home}/.cursor/chats",
    )
    # globalStorage is watched alone: never the extensions' trees below it
    assert [adapter.depth(r) for r in adapter.roots()] == [1, 1, 4, 3]


def test_macos_roots_live_under_application_support(
    make_config: Callable[..., Config], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    assert cursor(make_config()).roots() == (
        f"{home}/Library/Application Support/Cursor/User/globalStorage",
        f"{home}/.cursor/projects",
        f"{home}/.cursor/chats",
    )


def test_cursor_config_dir_and_the_config_override_are_honoured(
    make_config: Callable[..., Config], home: Path, tmp_path: Path
) -> None:
    env = {"CURSOR_CONFIG_DIR": str(tmp_path / "cc")}
    assert cursor(make_config(environ=env)).roots()[-2:] == (
        f"{tmp_path}/cc/projects",
        f"{tmp_path}/cc/chats",
    )
    adapter = cursor(make_config(agents__roots={"cursor": str(tmp_path / "elsewhere")}))
    assert adapter.roots() == (str(tmp_path / "elsewhere"),)
    assert adapter.depth(adapter.roots()[0]) == 4


@pytest.mark.parametrize(
    "rel",
    [
        "state.vscdb",
        "state.vscdb-wal",
        "state.vscdb-journal",
        "Users-me-app/agent-transcripts/8e2f4a6c-1b3d.jsonl",
        "Users-me-app/agent-transcripts/8e2f4a6c-1b3d.txt",
        "Users-me-app/agent-transcripts/8e2f4a6c-1b3d/8e2f4a6c-1b3d.jsonl",
        "362f4748a5734d0df6adda062941df74/3c5e7a9b-0d2f/store.db",
        "362f4748a5734d0df6adda062941df74/3c5e7a9b-0d2f/store.db-wal",
    ],
)
def test_matches_the_three_stores(config: Config, rel: str) -> None:
    assert cursor(config).matches(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "state.vscdb-shm",  # changes on every read, ours included
        "state.vscdb.backup",
        "storage.json",
        "anysphere.cursor-retrieval/state.vscdb",
        "app/agent-transcripts/8e2f/subagents/a1.jsonl",
        "app/agent-transcripts/subagents/a1.jsonl",
        "app/agent-transcripts/8e2f/other.jsonl",
        "app/agent-transcripts/.8e2f.jsonl.tmp",
        "app/agent-transcripts/8e2f.jsonl.tmp",
        "app/agent-transcripts/8e2f.tmp.1234.jsonl",
        "app/agent-transcripts/8e2f.json",
        "app/terminals/1.txt",
        "app/agent-tools/8e2f.txt",
        "362f4748/3c5e7a9b/store.db-shm",
        "362f4748/3c5e7a9b/other.db",
        "362f4748/store.db",
        "cli-config.json",
    ],
)
def test_rejects_side_temp_and_subagent_files(config: Config, rel: str) -> None:
    assert not cursor(config).matches(rel)


# -- IDE store ---------------------------------------------------------------------------


def test_ide_title_is_the_first_user_bubble_and_preview_the_latest(
    config: Config, home: Path
) -> None:
    path = ide_store(
        home,
        chat("c1", "/w/a", (1, "   "), (1, "Rename   the\nmodule"), (2, "Done."), (2, "")),
    )
    [meta] = cursor(config).parse(str(path) + "-wal").traces  # the -wal maps to its database
    assert (meta.trace_id, meta.title, meta.preview) == ("c1", "Rename the module", "Done.")
    assert (meta.created, meta.timestamp, meta.source_path) == (T0, T0 + 60_000, str(path))


def test_ide_skips_drafts_subagents_and_chats_without_a_user_message(
    config: Config, home: Path
) -> None:
    path = ide_store(
        home,
        chat("empty-state-draft", "/w", (1, "x"), isDraft=True),
        chat("sub", "/w", (1, "explore"), subagentInfo={"parentComposerId": "real"}),
        chat("best", "/w", (1, "try"), isBestOfNSubcomposer=True),
        chat("child", "/w", (1, "try"), parentComposerId="real"),
        chat("untouched", "/w"),
        chat("answer-only", "/w", (2, "hello")),
        chat("real", "/w", (1, "the real one")),
        raw={"composerData:broken": "{not json", "composerData:blob": b"\x00\x01"},
    )
    assert [m.trace_id for m in cursor(config).parse(str(path)).traces] == ["real"]


def test_ide_reads_composers_that_embed_their_conversation(config: Config, home: Path) -> None:
    old = {
        "composerId": "old",
        "createdAt": T0,
        "conversation": [{"type": 1, "text": "old prompt"}, {"type": 2, "text": "old answer"}],
    }
    [meta] = cursor(config).parse(str(ide_store(home, (old, {})))).traces
    assert (meta.title, meta.preview, meta.timestamp) == ("old prompt", "old answer", T0)


def test_ide_directory_from_the_workspace_the_composer_names(config: Config, home: Path) -> None:
    """No fsPath (before Cursor 3.12): workspaceStorage/<id>/workspace.json, decoded."""
    workspace(home, "b6e1c8f4", "file:///tmp/my%20app%23/x")
    data, bubbles = chat("c1", None, (1, "go"))
    data["workspaceIdentifier"] = {"id": "b6e1c8f4"}
    [meta] = cursor(config).parse(str(ide_store(home, (data, bubbles)))).traces
    assert meta.directory == "/tmp/my app#/x"


def test_ide_directory_from_the_workspace_store_that_lists_the_composer(
    config: Config, home: Path
) -> None:
    """Cursor 2: the workspace's `composer.composerData` lists its composers."""
    workspace(home, "aaa", "file:///w/other", listed=["c2"])
    workspace(home, "bbb", "file:///w/app", listed=["c1"])
    workspace(home, "ccc", "vscode-remote://ssh-remote%2Bbox/srv/app", listed=["c3"])
    path = ide_store(
        home, chat("c1", None, (1, "a")), chat("c2", None, (1, "b")), chat("c3", None, (1, "c"))
    )
    dirs = {m.trace_id: m.directory for m in cursor(config).parse(str(path)).traces}
    assert dirs == {"c1": "/w/app", "c2": "/w/other", "c3": None}


def test_ide_remote_workspace_has_no_local_directory(config: Config, home: Path) -> None:
    data, bubbles = chat("c1", "/srv/app", (1, "go"))
    data["workspaceIdentifier"]["uri"]["scheme"] = "vscode-remote"
    [meta] = cursor(config).parse(str(ide_store(home, (data, bubbles)))).traces
    assert meta.directory is None


def test_ide_directory_from_the_first_bubbles_workspace_uris(config: Config, home: Path) -> None:
    """No workspace at all: the first local `file://` URI in the first 8 bubbles'
    `workspaceUris`, percent-decoded (where the Traces CLI finds it); a workspace wins."""
    uris = ["vscode-remote://ssh-remote%2Bbox/srv/app", "file:///w/my%20app%23x", "file:///w/2"]
    found = chat("c1", None, (1, "a"), (2, "b"), (1, "c"))
    found[1]["c1-b1"]["workspaceUris"] = uris
    found[1]["c1-b2"]["workspaceUris"] = ["file:///w/later"]
    late = chat("c2", None, *[(1, f"m{i}") for i in range(9)])
    late[1]["c2-b8"]["workspaceUris"] = ["file:///w/ninth"]  # past the first 8: not looked at
    workspace(home, "ws", "file:///w/listed", listed=["c3"])
    listed = chat("c3", None, (1, "x"))
    listed[1]["c3-b0"]["workspaceUris"] = ["file:///w/bubble"]
    path = ide_store(home, found, late, listed)
    dirs = {m.trace_id: m.directory for m in cursor(config).parse(str(path)).traces}
    assert dirs == {"c1": "/w/my app#x", "c2": None, "c3": "/w/listed"}


def test_ide_workspace_uris_are_read_again_when_the_composer_changes(
    config: Config, home: Path
) -> None:
    path = ide_store(home, chat("c1", None, (1, "go")))
    adapter = cursor(config)
    [meta] = adapter.parse(str(path)).traces
    assert meta.directory is None
    data, bubbles = chat("c1", None, (1, "go"), (2, "in /w/app"))
    bubbles["c1-b1"]["workspaceUris"] = ["file:///w/app"]
    data["lastUpdatedAt"] = T0 + 120_000
    ide_store(home, (data, bubbles))
    [meta] = adapter.parse(str(path)).traces
    assert meta.directory == "/w/app"


def test_ide_second_parse_reads_only_the_sessions_that_changed(config: Config, home: Path) -> None:
    path = ide_store(home, *(chat(f"c{i}", "/w", (1, f"prompt {i}")) for i in range(5)))
    adapter = cursor(config)
    adapter._sessions = counting = CountingSessions()
    assert len(adapter.parse(str(path)).traces) == 5
    assert counting.reads == [["c0", "c1", "c2", "c3", "c4"]]

    data, bubbles = chat("c3", "/w", (1, "prompt 3"), (2, "new answer"))
    data["lastUpdatedAt"] = T0 + 120_000
    ide_store(home, (data, bubbles), raw={"unrelated:key": "{}"})
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("INSERT INTO ItemTable VALUES ('some.setting', '1')")
        con.commit()
    metas = {m.trace_id: m for m in adapter.parse(str(path)).traces}
    assert counting.reads[1:] == [["c3"]]
    assert len(metas) == 5
    assert (metas["c3"].preview, metas["c3"].timestamp) == ("new answer", T0 + 120_000)
    adapter.parse(str(path))
    assert counting.reads[2:] == []


def test_ide_composer_is_read_again_once_its_workspace_is_known(config: Config, home: Path) -> None:
    path = ide_store(home, chat("c1", None, (1, "go")))
    adapter = cursor(config)
    [meta] = adapter.parse(str(path)).traces
    assert meta.directory is None
    workspace(home, "ws", "file:///w/late", listed=["c1"])
    [meta] = adapter.parse(str(path)).traces
    assert meta.directory == "/w/late"


def test_ide_store_locked_by_cursor_fails_fast_and_reads_after(config: Config, home: Path) -> None:
    path = ide_store(home, chat("c1", "/w", (1, "go")))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert reason(cursor(config), path) == "locked"
        assert time.monotonic() - started < 1.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [m.trace_id for m in cursor(config).parse(str(path)).traces] == ["c1"]


def test_ide_parse_never_writes_to_the_store(config: Config, home: Path) -> None:
    path = ide_store(home, chat("c1", "/w", (1, "go")))
    before = (path.read_bytes(), sorted(os.listdir(path.parent)))
    cursor(config).parse(str(path))
    assert (path.read_bytes(), sorted(os.listdir(path.parent))) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\x00\x01binary\xff" * 500, "malformed"),
        (b"SQLite format 3\x00" + b"\x00" * 84, "malformed"),
    ],
)
def test_ide_store_that_is_not_a_store_is_a_parse_error(
    config: Config, home: Path, content: bytes, expected: str
) -> None:
    path = user_dir(home) / "globalStorage" / "state.vscdb"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert reason(cursor(config), path) == expected


def test_ide_store_truncated_or_without_tables_is_malformed(config: Config, home: Path) -> None:
    path = ide_store(home, *(chat(f"c{i}", "/w", (1, "x" * 5000)) for i in range(20)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert reason(cursor(config), path) == "malformed"
    path.unlink()
    sqlite3.connect(path).close()
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE other (x)")
    assert reason(cursor(config), path) == "malformed"


def test_vanished_store_is_vanished(config: Config, home: Path) -> None:
    assert reason(cursor(config), user_dir(home) / "globalStorage" / "state.vscdb") == "vanished"


# -- agent transcripts -------------------------------------------------------------------


def test_transcript_prompt_without_its_user_query_tags_and_context(
    config: Config, home: Path
) -> None:
    path = transcript(
        home,
        "w-app",
        "t1",
        [
            said("user", "<user_info>OS: linux</user_info>\n<attached_files>a.py</attached_files>"),
            said("user", "<user_info>x</user_info>\n<user_query>\nFix   the pager\n</user_query>"),
            said("assistant", "Fixed."),
        ],
    )
    [meta] = cursor(config).parse(str(path)).traces
    assert (meta.trace_id, meta.title, meta.preview) == ("t1", "Fix the pager", "Fixed.")


def test_transcript_without_ide_composer_takes_times_from_its_mtime(
    config: Config, home: Path
) -> None:
    path = transcript(home, "w-app", "t1", [said("user", "hello")])
    os.utime(path, ns=(T0 * 10**6, T0 * 10**6))
    [meta] = cursor(config).parse(str(path)).traces
    assert (meta.created, meta.timestamp, meta.preview) == (T0, T0, "hello")


def test_transcript_directory_matches_the_slug_of_a_known_directory(
    config: Config, home: Path
) -> None:
    path = transcript(home, "srv-my-app-v1-2", "t1", [said("user", "hi")])
    known = frozenset({"/srv/my-ap", "/srv/my.app/v1.2", "/srv/other"})
    [meta] = cursor(config).parse(str(path), known).traces
    assert meta.directory == "/srv/my.app/v1.2"


def test_transcript_directory_found_on_disk_from_its_lossy_slug(
    config: Config, home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "code" / "my.app" / "web-ui"
    target.mkdir(parents=True)
    (tmp_path / "code" / "my").mkdir()  # a decoy: "my" is also a prefix of the slug
    slug = str(target).lstrip("/").replace("/", "-").replace(".", "-")
    [meta] = cursor(config).parse(str(transcript(home, slug, "t1", [said("user", "hi")]))).traces
    assert meta.directory == str(target)
    path = transcript(home, "no-such-dir-anywhere-4f1c", "t2", [said("user", "hi")])
    [meta] = cursor(config).parse(str(path)).traces
    assert meta.directory is None


def test_txt_transcript_is_read_without_tool_blocks(config: Config, home: Path) -> None:
    lines = [
        "user:",
        "<user_query>",
        "Add a retry to the uploader",
        "</user_query>",
        "",
        "assistant:",
        "[Thinking] plan it",
        "  think more",
        "[Tool call] read_file",
        "  path: up.py",
        "[Tool result] read_file",
        "  def upload(): ...",
        "Added a retry with backoff.",
    ]
    path = transcript(home, "w", "t1", lines, ext="txt")
    [meta] = cursor(config).parse(str(path)).traces
    assert (meta.title, meta.preview) == (
        "Add a retry to the uploader",
        "Added a retry with backoff.",
    )


def test_txt_next_to_its_jsonl_is_not_a_second_trace(config: Config, home: Path) -> None:
    txt = transcript(home, "w", "t1", ["user:", "hi"], ext="txt")
    transcript(home, "w", "t1", [said("user", "hi")])
    assert cursor(config).parse(str(txt)).traces == []


def test_nested_transcript_is_named_by_its_directory(config: Config, home: Path) -> None:
    folder = home / ".cursor" / "projects" / "w" / "agent-transcripts" / "t9"
    folder.mkdir(parents=True)
    (folder / "t9.jsonl").write_text(json.dumps(said("user", "nested")) + "\n")
    [meta] = cursor(config).parse(str(folder / "t9.jsonl")).traces
    assert (meta.trace_id, meta.title) == ("t9", "nested")


def test_transcript_of_a_subagent_composer_is_not_a_trace(config: Config, home: Path) -> None:
    ide_store(home, chat("sub1", "/w", (1, "explore"), subagentInfo={"parentComposerId": "p"}))
    path = transcript(home, "w", "sub1", [said("user", "explore")])
    assert cursor(config).parse(str(path)).traces == []


def test_transcript_rewritten_or_renamed_keeps_one_trace_id(config: Config, home: Path) -> None:
    path = transcript(home, "w", "t1", [said("user", "first")])
    [before] = cursor(config).parse(str(path)).traces
    write_atomic(
        path,
        json.dumps(said("user", "first")) + "\n" + json.dumps(said("assistant", "more")) + "\n",
    )
    assert not cursor(config).matches(f"w/agent-transcripts/.{path.name}.tmp")
    [after] = cursor(config).parse(str(path)).traces
    path.write_text(json.dumps(said("user", "first")) + "\n")  # truncated and rewritten whole
    [again] = cursor(config).parse(str(path)).traces
    assert before.trace_id == after.trace_id == again.trace_id == "t1"
    assert (after.title, after.preview) == ("first", "more")


@pytest.mark.parametrize(
    ("ext", "content", "expected"),
    [
        ("jsonl", b"", "empty"),
        ("jsonl", b"\x00\x01\x02\n\x03\x04\n", "binary"),
        ("jsonl", b'{"role": "user",\n[1, 2\n', "malformed"),
        ("jsonl", b'{"role":"user","message":{"content":"half', "incomplete"),
        ("txt", b"", "empty"),
        ("txt", b"user:\x00\x00", "binary"),
        ("txt", b"us", "incomplete"),
        ("txt", b"no markers at all\n", "malformed"),
    ],
)
def test_bad_transcripts_are_parse_errors_with_a_reason(
    config: Config, home: Path, ext: str, content: bytes, expected: str
) -> None:
    path = transcript(home, "w", "t1", [], ext=ext)
    path.write_bytes(content)
    assert reason(cursor(config), path) == expected


def test_transcript_lookup_in_a_locked_ide_store_is_retried(config: Config, home: Path) -> None:
    store = ide_store(home, chat("t1", "/w", (1, "go")))
    path = transcript(home, "w", "t1", [said("user", "go")])
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert reason(cursor(config), path) == "locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [meta] = cursor(config).parse(str(path)).traces
    assert (meta.directory, meta.created) == ("/w", T0)


# -- CLI store ---------------------------------------------------------------------------


def test_cli_chat_directory_is_the_md5_of_a_candidate_directory(config: Config, home: Path) -> None:
    project = home / "code" / "api"
    project.mkdir(parents=True)
    path = cli_store(
        home,
        str(project),
        "k1",
        blob("user", "<user_info>OS: linux</user_info>"),
        blob("user", "<user_query>\nLint the scripts\n</user_query>"),
        b"\x0a\x20" + bytes(32),  # an index node (protobuf)
        blob("assistant", "Linted."),
    )
    [meta] = cursor(config).parse(str(path)).traces
    assert (meta.trace_id, meta.directory) == ("k1", str(project))
    assert (meta.title, meta.preview, meta.created) == ("Lint the scripts", "Linted.", T0)
    assert (meta.timestamp or 0) >= T0
    elsewhere = cli_store(home, "/nowhere/known", "k2", blob("user", "hi"))
    [meta] = cursor(config).parse(str(elsewhere)).traces
    assert meta.directory is None
    [meta] = cursor(config).parse(str(elsewhere), frozenset({"/nowhere/known"})).traces
    assert meta.directory == "/nowhere/known"


def test_cli_chat_without_a_head_or_a_prompt_is_not_a_trace_yet(config: Config, home: Path) -> None:
    adapter = cursor(config)
    assert adapter.parse(str(cli_store(home, "/w", "k1", head=None))).traces == []
    assert adapter.parse(str(cli_store(home, "/w", "k2", blob("assistant", "hi")))).traces == []
    sub = {"agentId": "k3", "subagentInfo": {"parentAgentId": "k1"}}
    assert adapter.parse(str(cli_store(home, "/w", "k3", blob("user", "x"), head=sub))).traces == []


def test_cli_chat_is_read_again_only_when_it_changed(config: Config, home: Path) -> None:
    path = cli_store(home, "/w", "k1", blob("user", "go"))
    adapter = cursor(config)
    adapter._sessions = counting = CountingSessions()
    adapter.parse(str(path))
    adapter.parse(str(path) + "-wal")
    cli_store(home, "/w", "k1", blob("assistant", "went"))
    [meta] = adapter.parse(str(path)).traces
    assert counting.reads == [["k1"], ["k1"]]
    assert meta.preview == "went"


@pytest.mark.parametrize(
    ("head", "expected"), [("zz-not-hex", "malformed"), ("5b315d", "malformed")]
)
def test_cli_chat_with_an_unreadable_head_is_malformed(
    config: Config, home: Path, head: str, expected: str
) -> None:
    path = cli_store(home, "/w", "k1", blob("user", "x"), head=head)
    assert reason(cursor(config), path) == expected


def test_cli_store_locked_fails_fast(config: Config, home: Path) -> None:
    path = cli_store(home, "/w", "k1", blob("user", "x"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert reason(cursor(config), path) == "locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- end to end --------------------------------------------------------------------------


@pytest.fixture
def running(daemons: Callable[..., Any], home: Path) -> Any:
    (home / ".cursor" / "projects").mkdir(parents=True)
    ide_store(home)
    daemon = daemons(home)
    daemon.wait_ready()
    return daemon


def test_new_cursor_sessions_are_captured_live_with_git_context(
    running: Any, home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "work.repo" / "web-app", remote="https://github.com/acme/web.git")
    head = git(repo, "rev-parse", "HEAD")
    ide_store(home, chat("live1", str(repo), (1, "Ship it"), (2, "Shipped")))
    slug = str(repo).lstrip("/").replace("/", "-").replace(".", "-")
    transcript(home, slug, "live2", [said("user", "<user_query>Only here</user_query>")])

    for trace_id, title in (("live1", "Ship it"), ("live2", "Only here")):
        row = running.row(trace_id)
        assert (row["directory"], row["title"]) == (str(repo), title)
        assert (row["git_remote_url"], row["git_branch"], row["git_ref"]) == (
            "https://github.com/acme/web",
            "main",
            head,
        )
