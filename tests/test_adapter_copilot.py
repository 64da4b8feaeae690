"""Copilot Chat in VS Code: operation logs and flat snapshots under the editor's User dir."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import FIXTURES, Daemon, git, isolated_env, make_repo, write_atomic
from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import MAX_LINE
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.copilot import Copilot
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import GitInfo, TraceMeta

EXPECTED = [
    s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] == "copilot"
]
SID = "5d2c4b6a-1e3f-4a5b-8c7d-9e0f1a2b3c4d"
T0 = 1_795_200_000_000
#: no VS Code of the developer's own leaks into the roots
NO_VSCODE_ENV = {"VSCODE_PORTABLE": "", "VSCODE_APPDATA": ""}


@pytest.fixture
def fresh(make_config: Callable[..., Config]) -> Callable[[], Copilot]:
    """A new adapter: nothing replayed yet."""
    return lambda: Copilot(make_config(environ=NO_VSCODE_ENV))


@pytest.fixture
def adapter(fresh: Callable[[], Copilot]) -> Copilot:
    return fresh()


def user_dir(home: Path) -> Path:
    return home / ".config" / "Code" / "User"


def chat_dir(home: Path, folder: str | None = "/w/app", ws: str = "a1b2c3") -> Path:
    """A workspace's chatSessions directory, its workspace.json naming `folder`."""
    sessions = user_dir(home) / "workspaceStorage" / ws / "chatSessions"
    sessions.mkdir(parents=True, exist_ok=True)
    if folder is not None:
        uri = "file://" + quote(folder)
        (sessions.parent / "workspace.json").write_text(json.dumps({"folder": uri}))
    return sessions


def request(text: Any, ts: int, reply: str | None = None, **extra: Any) -> dict[str, Any]:
    """A request in the order VS Code writes it: its message comes after its response."""
    return {
        "requestId": f"request_{ts}",
        "timestamp": ts,
        "modelId": "copilot/gpt-4.1",
        **extra,
        "response": [{"value": reply, "supportHtml": False}] if reply else [],
        "message": {"text": text},
    }


def snapshot(*requests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": 0,
        "v": {
            "version": 3,
            "creationDate": T0,
            "responderUsername": "GitHub Copilot",
            "sessionId": SID,
            **extra,
            "requests": list(requests),
        },
    }


def push(*requests: dict[str, Any], i: int | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"kind": 2, "k": ["requests"], "v": list(requests)}
    return op if i is None else {**op, "i": i}


def write_log(path: Path, ops: list[Any], tail: bytes = b"") -> Path:
    body = b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in ops)
    path.write_bytes(body + tail)
    return path


def append(path: Path, *ops: dict[str, Any]) -> None:
    with path.open("ab") as f:
        f.write(b"".join(json.dumps(o).encode() + b"\n" for o in ops))


def one(adapter: Copilot, path: Path) -> TraceMeta:
    [meta] = adapter.parse(str(path)).traces
    return meta


def reason(adapter: Copilot, path: Path) -> Any:
    try:
        return adapter.parse(str(path)).traces
    except ParseError as exc:
        return exc.reason


# ----------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("case", EXPECTED, ids=[s["id"] for s in EXPECTED])
def test_every_fixture_session_is_read_exactly(
    case: dict[str, Any], tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    home = tmp_path / "fixture-home"
    shutil.copytree(FIXTURES / "home", home)
    adapter = Copilot(make_config(environ={"HOME": str(home), **NO_VSCODE_ENV}))
    path = home / case["path"].removeprefix("home/")
    [root] = [r for r in adapter.roots() if str(path).startswith(r + "/")]
    assert adapter.matches(str(path)[len(root) + 1 :])
    meta = one(adapter, path)
    assert (meta.trace_id, meta.agent_id, meta.directory, meta.title) == (
        case["session_id"],
        "copilot",
        case["cwd"],
        case["title"],
    )
    assert (meta.created, meta.timestamp) == (to_ms(case["created"]), to_ms(case["updated"]))
    assert meta.agent_git is None
    assert str(meta.preview).startswith(("Order the COPY", "One mode"))


# -------------------------------------------------------------------------- roots


def test_linux_roots_are_precise_per_app_under_both_config_dirs(
    make_config: Callable[..., Config], home: Path, tmp_path: Path
) -> None:
    """workspaceStorage (3 deep) and the two chat folders of globalStorage (1 deep), never
    globalStorage itself, for Code, Insiders and VSCodium, in $XDG_CONFIG_HOME and ~/.config."""
    config = make_config(environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), **NO_VSCODE_ENV})
    adapter = Copilot(config)
    roots = adapter.roots()
    for base in (tmp_path / "xdg", home / ".config"):
        for app in ("Code", "Code - Insiders", "VSCodium"):
            user = base / app / "User"
            assert str(user / "workspaceStorage") in roots
            assert str(user / "globalStorage" / "emptyWindowChatSessions") in roots
            assert str(user / "globalStorage" / "transferredChatSessions") in roots
    assert len(roots) == 18
    assert not any(r.endswith("globalStorage") for r in roots)
    assert {adapter.depth(r) for r in roots if r.endswith("workspaceStorage")} == {3}
    assert {adapter.depth(r) for r in roots if r.endswith("ChatSessions")} == {1}


def test_macos_roots_live_in_application_support(
    make_config: Callable[..., Config], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    roots = Copilot(make_config(environ=NO_VSCODE_ENV)).roots()
    support = home / "Library" / "Application Support"
    assert str(support / "Code" / "User" / "workspaceStorage") in roots
    assert str(support / "VSCodium" / "User" / "globalStorage" / "emptyWindowChatSessions") in roots
    assert len(roots) == 9
    assert all(r.startswith(str(support)) for r in roots)


def test_vscode_appdata_and_portable_env_vars_move_the_user_dir(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """As VS Code resolves it: $VSCODE_APPDATA/<app>, and a portable install's user-data."""
    appdata, portable = tmp_path / "appdata", tmp_path / "portable"
    roots = Copilot(
        make_config(environ={"VSCODE_APPDATA": str(appdata), "VSCODE_PORTABLE": str(portable)})
    ).roots()
    assert roots[0] == str(portable / "user-data" / "User" / "workspaceStorage")
    assert str(appdata / "Code - Insiders" / "User" / "workspaceStorage") in roots
    assert not any(".config" in r for r in roots)


def test_config_override_names_the_user_directory(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    user = tmp_path / "elsewhere" / "User"
    adapter = Copilot(make_config(agents__roots={"copilot": str(user)}))
    assert adapter.roots() == (
        str(user / "workspaceStorage"),
        str(user / "globalStorage" / "emptyWindowChatSessions"),
        str(user / "globalStorage" / "transferredChatSessions"),
    )


@pytest.mark.parametrize(
    "rel",
    [
        f"3f7c2a/chatSessions/{SID}.jsonl",
        f"3f7c2a/chatSessions/{SID}.json",
        f"no-workspace/chatSessions/{SID}.json",  # empty windows before emptyWindowChatSessions
        f"{SID}.json",  # emptyWindowChatSessions/, transferredChatSessions/
        f"{SID}.jsonl",
    ],
)
def test_session_files_match(adapter: Copilot, rel: str) -> None:
    assert adapter.matches(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "3f7c2a/workspace.json",
        "3f7c2a/state.vscdb",
        "3f7c2a/state.vscdb-journal",
        "workspace.json",
        f"3f7c2a/chatSessions/{SID}.jsonl.tmp",
        f"3f7c2a/chatSessions/{SID}.json.vsctmp",
        f"3f7c2a/chatSessions/.{SID}.jsonl",
        f"3f7c2a/chatSessions/{SID}.tmp.json",
        f"3f7c2a/chatSessions/{SID}.json.bak",
        f"3f7c2a/chatEditingSessions/{SID}/state.json",
        f"3f7c2a/chatSessions/nested/{SID}.jsonl",
        f"3f7c2a/{SID}.jsonl",
        "github.copilot-chat/debug.json",
    ],
)
def test_temp_and_side_files_do_not_match(adapter: Copilot, rel: str) -> None:
    assert not adapter.matches(rel)


# ----------------------------------------------------------------- operation logs


def test_log_replay_reads_the_first_prompt_and_the_latest_activity(
    adapter: Copilot, home: Path
) -> None:
    path = write_log(
        chat_dir(home) / f"{SID}.jsonl",
        [
            snapshot(),
            {"kind": 1, "k": ["inputState"], "v": {"inputText": "draft, not a prompt"}},
            push(request("Why does the build fail?", T0 + 5_000)),
            {"kind": 2, "k": ["requests", 0, "response"], "v": [{"value": "A missing dep."}]},
            {"kind": 1, "k": ["customTitle"], "v": "Build failure"},
            push(request("And on CI?", T0 + 60_000)),
            {"kind": 2, "k": ["requests", 1, "response"], "v": [{"value": "Same cause."}]},
        ],
    )
    meta = one(adapter, path)
    assert (meta.trace_id, meta.directory) == (SID, "/w/app")
    assert (meta.title, meta.preview) == ("Why does the build fail?", "Same cause.")
    assert (meta.created, meta.timestamp) == (T0, T0 + 60_000)
    done = {"value": 1, "completedAt": T0 + 90_000}
    append(path, {"kind": 1, "k": ["requests", 1, "modelState"], "v": done})
    assert one(adapter, path).timestamp == T0 + 90_000  # the reply ended later


def test_log_sets_deletes_and_truncating_pushes_are_applied(adapter: Copilot, home: Path) -> None:
    """`i` cuts the array before the push; sets replace a request, its text or its time."""
    path = write_log(
        chat_dir(home) / f"{SID}.jsonl",
        [snapshot(request("first", T0 + 1), request("second", T0 + 2))],
    )
    append(path, push(request("second, edited", T0 + 3), i=1))
    assert (one(adapter, path).title, one(adapter, path).preview) == ("first", "second, edited")
    append(path, {"kind": 1, "k": ["requests", 0, "message", "text"], "v": "first, reworded"})
    assert one(adapter, path).title == "first, reworded"
    append(path, {"kind": 1, "k": ["requests", 0, "message"], "v": {"text": "first, again"}})
    append(path, {"kind": 1, "k": ["requests", 1], "v": request("second, replaced", T0 + 5)})
    append(path, {"kind": 1, "k": ["requests", 1, "timestamp"], "v": T0 + 6})
    meta = one(adapter, path)
    assert (meta.title, meta.preview, meta.timestamp) == (
        "first, again",
        "second, replaced",
        T0 + 6,
    )
    append(path, push(request("started over", T0 + 7), i=0))
    meta = one(adapter, path)
    assert (meta.title, meta.preview, meta.timestamp) == ("started over", "started over", T0 + 7)
    append(path, {"kind": 3, "k": ["requests"]})
    assert adapter.parse(str(path)).traces == []  # no request left: not a trace any more


def test_a_log_in_another_key_order_is_still_replayed(adapter: Copilot, home: Path) -> None:
    first, later = snapshot(), push(request("keys in any order", T0 + 3))
    path = write_log(
        chat_dir(home) / f"{SID}.jsonl",
        [{"v": first["v"], "kind": 0}, {"v": later["v"], "k": later["k"], "kind": 2}],
    )
    assert (one(adapter, path).title, one(adapter, path).timestamp) == ("keys in any order", T0 + 3)


def test_a_log_without_requests_is_not_a_trace_yet(adapter: Copilot, home: Path) -> None:
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [snapshot()])
    assert adapter.parse(str(path)).traces == []
    append(path, push(request("now it is one", T0 + 9)))
    assert one(adapter, path).title == "now it is one"


def test_a_half_written_first_line_is_not_a_session_yet(adapter: Copilot, home: Path) -> None:
    whole = json.dumps(snapshot(request("hello", T0))).encode()
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [], tail=whole[:40])
    assert adapter.parse(str(path)).traces == []
    path.write_bytes(whole + b"\n")
    assert one(adapter, path).title == "hello"


def test_old_string_prompts_and_prompts_only_in_parts_are_read(
    adapter: Copilot, home: Path
) -> None:
    old = {**request(None, T0), "message": "Explain\n\nthis   regex"}
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [snapshot(old)])
    assert one(adapter, path).title == "Explain this regex"
    parts = {"text": "", "parts": [{"kind": "agent", "text": "@workspace"}, {"text": " /fix it"}]}
    write_log(path, [snapshot({**request(None, T0), "message": parts})])
    assert one(adapter, path).title == "@workspace /fix it"


def test_the_agents_own_repo_record_is_its_git(adapter: Copilot, home: Path) -> None:
    repo = {
        "workspaceType": "remote-git",
        "syncStatus": "synced",
        "remoteUrl": "https://github.com/acme/app.git",
        "localBranch": "feature/x",
        "localHeadCommit": "0123456789abcdef0123456789abcdef01234567",
    }
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [snapshot(request("hi", T0), repoData=repo)])
    assert one(adapter, path).agent_git == GitInfo(
        "https://github.com/acme/app.git", "feature/x", "0123456789abcdef0123456789abcdef01234567"
    )
    append(path, {"kind": 1, "k": ["repoData"], "v": {"workspaceType": "plain-folder"}})
    assert one(adapter, path).agent_git is None


def test_an_append_is_read_from_where_the_last_read_stopped(
    adapter: Copilot, fresh: Callable[[], Copilot], home: Path
) -> None:
    """Bytes already replayed are not read again: damage to them goes unseen until the
    file is rewritten, while what is appended is applied."""
    path = write_log(
        chat_dir(home) / f"{SID}.jsonl",
        [snapshot(request("the first prompt", T0 + 1)), {"kind": 1, "k": ["x"], "v": "y" * 200}],
    )
    assert one(adapter, path).title == "the first prompt"
    data = bytearray(path.read_bytes())
    start = data.index(b"the first prompt")
    data[start : start + 16] = b"SOMETHING ELSE!!"
    path.write_bytes(bytes(data))
    append(path, push(request("a second prompt", T0 + 2)))
    meta = one(adapter, path)
    assert (meta.title, meta.timestamp) == ("the first prompt", T0 + 2)
    assert one(fresh(), path).title == "SOMETHING ELSE!!"  # what a first read sees


def test_a_compacted_log_is_one_trace_read_again_from_its_start(
    adapter: Copilot, home: Path
) -> None:
    """VS Code rewrites a long log as one fresh snapshot: same id, nothing lost or doubled."""
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [snapshot(request("one", T0 + 1))])
    for n in range(2, 40):
        append(path, push(request(f"prompt {n}", T0 + n)))
    before = one(adapter, path)
    requests = [request("one", T0 + 1)] + [request(f"prompt {n}", T0 + n) for n in range(2, 41)]
    write_log(path, [snapshot(*requests)])  # shorter than the log it replaces
    after = one(adapter, path)
    assert (before.trace_id, before.timestamp) == (SID, T0 + 39)
    assert (after.trace_id, after.title, after.timestamp) == (SID, "one", T0 + 40)
    assert after.preview == "prompt 40"


def test_a_huge_snapshot_line_is_read_in_bounds(adapter: Copilot, home: Path) -> None:
    """A compacted log is one line of many MB, each prompt after its (huge) response:
    id, start, first prompt and latest request come from a bounded scan of it."""
    big = "x" * (3 * 1024 * 1024)
    first = request("Refactor the parser", T0 + 10, big)
    second = request("Now the lexer", T0 + 20, big)
    queued = {"id": "q", "request": request("queued, not sent", T0 + 99)}
    repo = {"workspaceType": "local-git", "localBranch": "main"}
    line = snapshot(first, second, repoData=repo)
    line["v"]["pendingRequests"] = [queued]
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [line])
    assert path.stat().st_size > 2 * MAX_LINE
    meta = one(adapter, path)
    assert (meta.trace_id, meta.title, meta.created) == (SID, "Refactor the parser", T0)
    assert (meta.timestamp, meta.preview) == (T0 + 20, "Now the lexer")
    assert meta.agent_git == GitInfo(None, "main", None)


def test_a_huge_first_push_still_gives_the_title(adapter: Copilot, home: Path) -> None:
    big = request("Summarise the logs " + "and more " * 3000, T0 + 5, "y" * (2 * MAX_LINE))
    path = write_log(chat_dir(home) / f"{SID}.jsonl", [snapshot(), push(big)])
    meta = one(adapter, path)
    assert str(meta.title).startswith("Summarise the logs and more")
    assert meta.timestamp == T0 + 5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02garbage\x00\n\xff\x00\n", "binary"),
        (b'{"kind":0,"v":\n[1,2\nnope\n', "malformed"),
        (b'{"kind":1,"k":["customTitle"],"v":"no snapshot before me"}\n', "malformed"),
        (b'{"kind":0,"v":{"sessionId":"x","requests":[' + b"1," * MAX_LINE + b"1]", []),
    ],
    ids=["empty", "binary", "malformed", "no-initial-snapshot", "torn"],
)
def test_bad_logs_give_the_right_reason(
    adapter: Copilot, home: Path, content: bytes, expected: Any
) -> None:
    path = chat_dir(home) / f"{SID}.jsonl"
    path.write_bytes(content)
    assert reason(adapter, path) == expected


# ------------------------------------------------------------------ flat snapshots


def flat(*requests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": 3, "requests": list(requests), "sessionId": SID, "creationDate": T0, **extra}


def test_a_flat_session_is_read_and_its_rewrite_is_the_same_trace(
    adapter: Copilot, home: Path
) -> None:
    path = chat_dir(home) / f"{SID}.json"
    write_atomic(path, json.dumps(flat(request("Explain CI", T0 + 5, "Sure."))))
    meta = one(adapter, path)
    assert (meta.trace_id, meta.title, meta.preview, meta.timestamp) == (
        SID,
        "Explain CI",
        "Sure.",
        T0 + 5,
    )
    requests = [request("Explain CI", T0 + 5), request("More", T0 + 50)]
    write_atomic(path, json.dumps(flat(*requests, lastMessageDate=T0 + 70)))
    again = one(adapter, path)
    assert (again.trace_id, again.title, again.timestamp) == (SID, "Explain CI", T0 + 70)


def test_a_flat_session_beside_its_log_yields_nothing(adapter: Copilot, home: Path) -> None:
    sessions = chat_dir(home)
    (sessions / f"{SID}.json").write_text(json.dumps(flat(request("old copy", T0))))
    write_log(sessions / f"{SID}.jsonl", [snapshot(request("old copy", T0))])
    assert adapter.parse(str(sessions / f"{SID}.json")).traces == []
    assert one(adapter, sessions / f"{SID}.jsonl").trace_id == SID


def test_a_flat_session_without_requests_is_not_a_trace(adapter: Copilot, home: Path) -> None:
    path = chat_dir(home) / f"{SID}.json"
    path.write_text(json.dumps(flat()))
    assert adapter.parse(str(path)).traces == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b'{"version":3,\x00\x00\x01', "binary"),
        (json.dumps(flat(request("half", T0))).encode()[:50], "incomplete"),
        (b"[1, 2, 3]", "malformed"),
        (b'{"version": 3, "sessionId": "x"}', "malformed"),
    ],
    ids=["empty", "binary", "half-written", "not-an-object", "no-requests"],
)
def test_bad_flat_sessions_give_the_right_reason(
    adapter: Copilot, home: Path, content: bytes, expected: str
) -> None:
    path = chat_dir(home) / f"{SID}.json"
    path.write_bytes(content)
    assert reason(adapter, path) == expected


def test_a_very_large_flat_session_is_read_only_in_part(adapter: Copilot, home: Path) -> None:
    """Over 8 MB: the id, the start and the first prompt from the head (even when the first
    request is not complete in it), the last activity from the tail."""
    first = {"requestId": "r1", "message": {"text": "The first question"}, "timestamp": T0 + 1}
    first["response"] = [{"value": "r" * (5 * 1024 * 1024)}]
    requests = [first] + [request(f"q{n}", T0 + n, "r" * 100_000) for n in range(2, 50)]
    path = chat_dir(home) / f"{SID}.json"
    write_atomic(path, json.dumps(flat(*requests, lastMessageDate=T0 + 500)))
    assert path.stat().st_size > 8 * 1024 * 1024
    meta = one(adapter, path)
    assert (meta.trace_id, meta.title, meta.created, meta.timestamp) == (
        SID,
        "The first question",
        T0,
        T0 + 500,
    )


def test_missing_and_unreadable_files(adapter: Copilot, home: Path) -> None:
    sessions = chat_dir(home)
    assert reason(adapter, sessions / f"{SID}.jsonl") == "vanished"
    (sessions / f"{SID}.json").mkdir()
    assert reason(adapter, sessions / f"{SID}.json") == "not_a_file"


# ------------------------------------------------------------- working directory


def test_folder_uri_is_percent_decoded(adapter: Copilot, home: Path) -> None:
    sessions = chat_dir(home, "/home/dev/My Projects/café#1")
    path = write_log(sessions / f"{SID}.jsonl", [snapshot(request("hi", T0))])
    assert one(adapter, path).directory == "/home/dev/My Projects/café#1"


def test_multi_root_workspace_gives_its_first_folder(
    adapter: Copilot, home: Path, tmp_path: Path
) -> None:
    """The .code-workspace file (JSON with comments) names folders relative to itself."""
    config = tmp_path / "proj" / "all.code-workspace"
    config.parent.mkdir()
    config.write_text(
        '{\n  // the main one first\n  "folders": [\n    {"path": "api"}, /* then */\n'
        '    {"path": "/elsewhere/web"},\n  ],\n  "settings": {"a": "http://x//y"},\n}\n'
    )
    sessions = chat_dir(home, None)
    (sessions.parent / "workspace.json").write_text(json.dumps({"workspace": config.as_uri()}))
    path = write_log(sessions / f"{SID}.jsonl", [snapshot(request("hi", T0))])
    assert one(adapter, path).directory == str(tmp_path / "proj" / "api")
    config.write_text(json.dumps({"folders": [{"uri": "file:///srv/api%20v2"}]}))
    assert one(adapter, path).directory == "/srv/api v2"


@pytest.mark.parametrize(
    "workspace",
    [
        {"folder": "vscode-remote://ssh-remote%2Bbox/home/dev/app"},
        {"folder": "file://fileserver/share/app"},
        {"workspace": "file:///nowhere/gone.code-workspace"},
        {"something": "else"},
        "not json at all",
    ],
)
def test_remote_or_unknown_workspaces_leave_the_directory_unknown(
    adapter: Copilot, home: Path, workspace: Any
) -> None:
    sessions = chat_dir(home, None)
    text = workspace if isinstance(workspace, str) else json.dumps(workspace)
    (sessions.parent / "workspace.json").write_text(text)
    path = write_log(sessions / f"{SID}.jsonl", [snapshot(request("hi", T0))])
    assert (one(adapter, path).directory, one(adapter, path).title) == (None, "hi")


def test_empty_window_and_transferred_chats_are_traces_without_a_directory(
    adapter: Copilot, home: Path
) -> None:
    glob = user_dir(home) / "globalStorage"
    empty = glob / "emptyWindowChatSessions" / f"{SID}.jsonl"
    moved = glob / "transferredChatSessions" / f"{SID}.json"
    for path in (empty, moved):
        path.parent.mkdir(parents=True)
    write_log(empty, [snapshot(request("no folder open", T0))])
    moved.write_text(json.dumps(flat(request("no folder open", T0))))
    for path in (empty, moved):
        meta = one(adapter, path)
        assert (meta.trace_id, meta.directory, meta.title) == (SID, None, "no folder open")


# --------------------------------------------------------------------- end to end


def test_a_new_chat_is_captured_by_the_daemon_with_its_git_context(
    daemons: Callable[..., Daemon], home: Path, tmp_path: Path
) -> None:
    """A window opened on a repository: its workspace storage and chat log appear while the
    daemon runs, the snapshot first, the request at VS Code's next flush."""
    repo = make_repo(tmp_path / "repo", remote="https://github.com/acme/chat.git")
    (user_dir(home) / "workspaceStorage").mkdir(parents=True)
    daemon = daemons(home, env=isolated_env(home, **NO_VSCODE_ENV))
    daemon.wait_ready()
    sessions = chat_dir(home, str(repo), ws="9f8e7d")
    path = sessions / f"{SID}.jsonl"
    write_log(path, [snapshot()])
    time.sleep(0.05)
    append(path, push(request("Add a health endpoint", T0 + 5, "Done.")))
    row = daemon.row(SID)
    assert (row["directory"], row["title"], row["source_path"]) == (
        str(repo),
        "Add a health endpoint",
        str(path),
    )
    assert row["git_remote_url"] == "https://github.com/acme/chat"
    assert (row["git_branch"], row["git_ref"]) == ("main", git(repo, "rev-parse", "HEAD"))
    assert daemon.stop() == 0
