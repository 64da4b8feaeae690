"""Amp: whole-file thread documents, rewritten on every change; real files only."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, Daemon, git, make_repo, write_atomic
from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import MAX_DOCUMENT
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.amp import Amp
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import GitInfo

AMP_CASES = [
    s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] == "amp"
]
CREATED = 1795167300000  # 2026-11-20T09:35:00Z
LEGACY = ("globalStorage", "sourcegraph.amp", "threads3")
EDITORS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf")


def threads_dir(home: Path) -> Path:
    return home / ".local" / "share" / "amp" / "threads"


def user(text: str, sent_at: int = CREATED + 1000) -> dict[str, Any]:
    return {
        "role": "user",
        "messageId": 0,
        "content": [{"type": "text", "text": text}],
        "meta": {"sentAt": sent_at},
    }


def assistant(text: str, ts: str | None = "2026-11-20T09:36:00.000Z") -> dict[str, Any]:
    usage: dict[str, Any] = {"model": "claude-sonnet-4-5", "inputTokens": 3, "outputTokens": 9}
    if ts is not None:
        usage["timestamp"] = ts
    return {
        "role": "assistant",
        "messageId": 1,
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": text}],
        "state": {"type": "complete", "stopReason": "end_turn"},
        "usage": usage,
    }


def env(uri: Any = "file:///work/my%20app", **initial: Any) -> dict[str, Any]:
    return {"initial": {"trees": [{"displayName": "my app", "uri": uri}], **initial}}


def thread(messages: list[Any], **top: Any) -> dict[str, Any]:
    return {"v": 3, "id": "T-x", "created": CREATED, "messages": messages, "env": env(), **top}


def thread_file(home: Path, document: Any, *, thread_id: str | None = None) -> Path:
    directory = threads_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    thread_id = thread_id or f"T-{uuid.uuid4()}"
    if isinstance(document, dict):
        document = {**document, "id": thread_id}
    path = directory / f"{thread_id}.json"
    write_atomic(path, document if isinstance(document, bytes | str) else json.dumps(document))
    return path


def reason(adapter: Amp, path: Path) -> str:
    with pytest.raises(ParseError) as info:
        adapter.parse(str(path))
    return info.value.reason


@pytest.fixture
def amp(config: Config) -> Amp:
    return Amp(config)


# ------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("case", AMP_CASES, ids=[c["id"] for c in AMP_CASES])
def test_fixture_thread_is_read_exactly(
    case: dict[str, Any], home: Path, make_config: Callable[..., Config]
) -> None:
    shutil.copytree(FIXTURES / "home" / ".local", home / ".local")
    adapter = Amp(make_config(environ={"HOME": str(home)}))
    path = home / case["path"].removeprefix("home/")
    assert str(path.parent) == adapter.roots()[0]
    assert adapter.matches(path.name)
    [meta] = adapter.parse(str(path)).traces
    assert meta.agent_id == case["agent"] == "amp"
    assert meta.trace_id == case["session_id"]
    assert meta.directory == case["cwd"]
    assert meta.title == case["title"]
    # the first message's time, as the Traces CLI sends it (`sourceCreatedAt`), not the
    # thread's `created` 1.25 s before
    assert meta.created == to_ms("2026-11-20T09:35:01.250Z")
    assert meta.timestamp == to_ms(case["updated"])
    assert meta.preview == "Pagination added with an opaque next_cursor token."
    want = case["agent_git"]
    assert meta.agent_git == GitInfo(want["repository_url"], "main", want["commit_hash"])
    assert meta.source_path == str(path)


# --------------------------------------------------------------------------- roots


def test_roots_are_the_central_store_and_the_editors_legacy_stores(amp: Amp, home: Path) -> None:
    legacy = [str(home / ".config" / app / "User" / os.path.join(*LEGACY)) for app in EDITORS]
    assert amp.roots() == (str(threads_dir(home)), *legacy)
    assert {amp.depth(root) for root in amp.roots()} == {1}


def test_macos_keeps_the_central_store_and_moves_the_editor_stores(
    make_config: Callable[..., Config], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    support = home / "Library" / "Application Support"
    legacy = [str(support / app / "User" / os.path.join(*LEGACY)) for app in EDITORS]
    assert Amp(make_config()).roots() == (str(threads_dir(home)), *legacy)


def test_xdg_data_home_moves_the_central_store(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(environ={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert Amp(config).roots()[0] == str(tmp_path / "data" / "amp" / "threads")


def test_config_root_override_replaces_every_default(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(agents__roots={"amp": str(tmp_path / "threads")})
    adapter = Amp(config)
    assert adapter.roots() == (str(tmp_path / "threads"),)
    assert adapter.depth(adapter.roots()[0]) == 1


# ------------------------------------------------------------------------- matches


def test_matches_thread_files_only(amp: Amp) -> None:
    assert amp.matches("T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json")
    for rel in (
        "T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json.tmp",
        "T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json.1795167300000.tmp",
        ".T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json",
        "T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json~",
        "T-019aa1c4.json.swp",
        "sub/T-019aa1c4-5d6e-7f80-9a1b-2c3d4e5f6a7b.json",
        "history.jsonl",
        "settings.json",
        "T-.json",
    ):
        assert not amp.matches(rel), rel


# ------------------------------------------------------------------------- content


def test_title_skips_info_summaries_and_tool_results(amp: Amp, home: Path) -> None:
    tool_result = {
        "role": "user",
        "content": [{"type": "tool_result", "toolUseID": "t1", "run": {"status": "done"}}],
    }
    info = {"role": "info", "content": [{"type": "summary", "summary": {"type": "message"}}]}
    path = thread_file(
        home,
        thread(
            [
                info,
                {"role": "info", "content": [{"type": "text", "text": "Summary of before"}]},
                tool_result,
                user("  Add  retries\nto the client "),
                assistant("Done"),
                user("second prompt"),
            ],
            title="Retries",
        ),
    )
    [meta] = amp.parse(str(path)).traces
    assert meta.title == "Add retries to the client"
    assert meta.preview == "second prompt"


def test_trace_id_is_the_file_name(amp: Amp, home: Path) -> None:
    thread_id = "T-019aa1c4-0000-7000-8000-000000000001"
    path = thread_file(home, thread([user("x")]), thread_id=thread_id)
    [meta] = amp.parse(str(path)).traces
    assert meta.trace_id == thread_id


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        ("file:///work/my%20app/%C3%A9t%C3%A9", {}, "/work/my app/été"),
        ("file://localhost/work/app", {}, "/work/app"),
        ({"scheme": "file", "fsPath": "/work/obj", "path": "/work/obj"}, {}, "/work/obj"),
        ("vscode-remote://ssh-remote%2Bbox/work/app", {}, None),
        ("vscode-remote://ssh-remote%2Bbox/work/app", {"cwd": "/work/cwd"}, "/work/cwd"),
        (None, {"cwd": "/work/cwd"}, "/work/cwd"),
    ],
)
def test_directory_is_the_decoded_first_tree_uri_or_cwd(
    amp: Amp, home: Path, uri: Any, extra: dict[str, Any], expected: str | None
) -> None:
    path = thread_file(home, thread([user("x")], env=env(uri, **extra)))
    [meta] = amp.parse(str(path)).traces
    assert meta.directory == expected


def test_without_env_directory_and_git_are_unknown(amp: Amp, home: Path) -> None:
    document = thread([user("x")])
    del document["env"]
    [meta] = amp.parse(str(thread_file(home, document))).traces
    assert (meta.directory, meta.agent_git) == (None, None)


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        (
            {"type": "git", "url": "https://h/r", "ref": "refs/heads/feat/x", "sha": "abc"},
            GitInfo("https://h/r", "feat/x", "abc"),
        ),
        ({"type": "git", "url": "https://h/r", "ref": "refs/tags/v1"}, GitInfo("https://h/r")),
        ({"type": "git", "ref": "main"}, GitInfo(branch="main")),
        ({"type": "hg", "url": "https://h/r"}, None),
        ({"type": "git"}, None),
    ],
)
def test_agent_git_comes_from_the_first_trees_repository(
    amp: Amp, home: Path, repository: dict[str, Any], expected: GitInfo | None
) -> None:
    tree = {"uri": "file:///w", "repository": repository}
    path = thread_file(home, thread([user("x")], env={"initial": {"trees": [tree]}}))
    [meta] = amp.parse(str(path)).traces
    assert meta.agent_git == expected


def test_last_activity_is_the_newest_message_stamp(amp: Amp, home: Path) -> None:
    path = thread_file(
        home,
        thread(
            [
                user("a", sent_at=CREATED + 5_000),
                assistant("b", ts="2026-11-20T09:50:00.000Z"),
                user("c", sent_at=CREATED + 1_000),
                assistant("d", ts=None),
            ]
        ),
    )
    [meta] = amp.parse(str(path)).traces
    assert meta.timestamp == to_ms("2026-11-20T09:50:00.000Z")
    assert meta.created == CREATED + 1_000  # the earliest message, as the Traces CLI sends


def test_last_activity_without_stamps_is_the_file_mtime(amp: Amp, home: Path) -> None:
    bare = {"role": "user", "content": [{"type": "text", "text": "old thread"}]}
    path = thread_file(home, thread([bare, assistant("ok", ts=None)]))
    later = (CREATED + 3_600_000) / 1000
    os.utime(path, (later, later))
    [meta] = amp.parse(str(path)).traces
    assert meta.timestamp == CREATED + 3_600_000


def test_thread_without_messages_is_not_a_trace_yet(amp: Amp, home: Path) -> None:
    assert amp.parse(str(thread_file(home, thread([])))).traces == []
    info_only = thread([{"role": "info", "content": [{"type": "text", "text": "x"}]}])
    assert amp.parse(str(thread_file(home, info_only))).traces == []


def test_rewrites_and_renames_keep_one_trace(amp: Amp, home: Path) -> None:
    """Rewritten whole (in place or tmp + rename): one id, the latest title and activity."""
    thread_id = "T-019aa1c4-0000-7000-8000-00000000beef"
    path = thread_file(home, thread([user("First words")]), thread_id=thread_id)
    [first] = amp.parse(str(path)).traces

    grown = thread([user("First words"), assistant("Answer", ts="2026-11-20T10:00:00.000Z")])
    thread_file(home, grown, thread_id=thread_id)  # tmp + rename
    [second] = amp.parse(str(path)).traces
    path.write_text(json.dumps({**grown, "id": thread_id, "title": "Named"}))  # in place
    [third] = amp.parse(str(path)).traces

    assert first.trace_id == second.trace_id == third.trace_id == thread_id
    assert second.timestamp == third.timestamp == to_ms("2026-11-20T10:00:00.000Z")
    assert (third.title, third.preview) == ("First words", "Answer")


# ---------------------------------------------------------------- large documents


def big_thread(home: Path) -> tuple[Path, dict[str, Any]]:
    """A thread over the whole-file cap, with `env` written last like Amp does."""
    filler = "y" * 100_000
    messages = [user("The very first prompt")]
    for i in range(90):
        messages += [assistant(f"{filler}{i}", ts=None), user(f"follow-up {i}", CREATED + i)]
    messages.append(assistant("Final answer", ts="2026-11-20T12:00:00.000Z"))
    document = {"v": 9, "id": "", "created": CREATED, "title": "Big", "messages": messages}
    repository = {"type": "git", "url": "https://h/big", "ref": "refs/heads/main", "sha": "f00"}
    tree = {"uri": "file:///work/big%20one", "repository": repository}
    document["env"] = {"initial": {"trees": [tree]}}
    return thread_file(home, document), document


def test_large_thread_is_read_from_its_head_and_tail(amp: Amp, home: Path) -> None:
    path, _ = big_thread(home)
    assert path.stat().st_size > MAX_DOCUMENT
    [meta] = amp.parse(str(path)).traces
    assert (meta.title, meta.directory) == ("The very first prompt", "/work/big one")
    assert meta.agent_git == GitInfo("https://h/big", "main", "f00")
    assert meta.timestamp == to_ms("2026-11-20T12:00:00.000Z")
    assert meta.created == CREATED
    assert meta.preview == "Final answer"


def test_large_thread_cut_short_is_incomplete(amp: Amp, home: Path) -> None:
    path, _ = big_thread(home)
    with path.open("r+b") as f:
        f.truncate(MAX_DOCUMENT + 4096)
    assert reason(amp, path) == "incomplete"


# -------------------------------------------------------------------------- errors


def test_half_written_thread_is_incomplete(amp: Amp, home: Path) -> None:
    text = json.dumps(thread([user("x")]))
    assert reason(amp, thread_file(home, text[: len(text) // 2])) == "incomplete"


def test_empty_file_is_empty(amp: Amp, home: Path) -> None:
    assert reason(amp, thread_file(home, b"")) == "empty"


def test_binary_file_is_binary(amp: Amp, home: Path) -> None:
    assert reason(amp, thread_file(home, os.urandom(1024) + b"\x00")) == "binary"


@pytest.mark.parametrize("document", ["[1, 2]", '"T-x"', '{"settings": {"a": 1}}'])
def test_json_that_is_not_a_thread_is_malformed(amp: Amp, home: Path, document: str) -> None:
    assert reason(amp, thread_file(home, document)) == "malformed"


def test_vanished_file_is_vanished(amp: Amp, home: Path) -> None:
    assert reason(amp, threads_dir(home) / "T-gone.json") == "vanished"


# ---------------------------------------------------------------------- end to end


def test_daemon_captures_a_new_amp_thread_with_git_context(
    daemons: Callable[..., Daemon], home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "amp repo", remote="https://github.com/acme/amp-app.git")
    threads_dir(home).mkdir(parents=True)
    daemon = daemons(home)
    daemon.wait_ready()

    thread_id = f"T-{uuid.uuid4()}"
    uri = "file://" + str(repo).replace(" ", "%20")
    document = thread([user("Add a health endpoint"), assistant("Added.")], env=env(uri))
    thread_file(home, document, thread_id=thread_id)

    row = daemon.row(thread_id)
    assert (row["agent_id"], row["directory"], row["title"]) == (
        "amp",
        str(repo),
        "Add a health endpoint",
    )
    assert row["git_remote_url"] == "https://github.com/acme/amp-app"
    assert row["git_branch"] == "main"
    assert row["git_ref"] == git(repo, "rev-parse", "HEAD")
    assert daemon.stop() == 0
