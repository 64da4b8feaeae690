"""Adapters read the agents' real on-disk formats (synthetic fixtures) exactly."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, claude_session, fixture_home, write_atomic
from tracesd.capture.adapters import AGENT_IDS, Adapter, build_adapters
from tracesd.capture.adapters._files import MAX_LINE, SessionFile
from tracesd.capture.adapters._text import to_ms
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import TITLE_MAX, GitInfo, SkippedLine

EXPECTED = [
    s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] in AGENT_IDS
]


@pytest.fixture(name="fixture_home")
def _fixture_home(tmp_path: Path) -> Path:
    """The fixture HOME, with the SQLite stores its script builds (OpenCode, Cursor, ...)."""
    return fixture_home(tmp_path / "fixture-home")


def adapters_for(config: Config) -> dict[str, Adapter]:
    return {a.agent_id: a for a in build_adapters(config)}


def relative(adapter: Adapter, path: Path) -> str | None:
    for root in adapter.roots():
        if str(path).startswith(root + "/"):
            return str(path)[len(root) + 1 :]
    return None


#: `created` is what the Traces CLI sends as `sourceCreatedAt` (measured with the real CLI
#: 0.6.31, docs/traces-cli-0.6.31.md (f)), which for these is not expected.json's session start:
#: Codex, the first record's time (5 ms after the session_meta payload's own); Amp, the first
#: message's (the thread's `created` is 1.25 s earlier).
CLI_CREATED = {"codex": "2026-11-20T09:14:05.517Z", "amp": "2026-11-20T09:35:01.250Z"}
#: sessions whose model the Traces CLI does not send although expected.json names one: Cline
#: (the CLI reads only a message's own model field; these keep it in task metadata)
NO_CLI_MODEL = frozenset({"cline/classic", "cline/sdk"})
#: expected.json reads the agent transcript alone; the adapter, like the Traces CLI, takes
#: the composer of the same id from Cursor's global store, which names the model
CLI_MODEL = {"cursor/agent-transcript": "claude-4.5-sonnet"}


@pytest.mark.parametrize("case", EXPECTED, ids=[s["id"] for s in EXPECTED])
def test_fixture_sessions_match_expected(
    case: dict[str, Any], fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    """id, agent, cwd, title, created and last activity as expected.json says."""
    config = make_config(environ={"HOME": str(fixture_home)})
    # Legacy Gemini projects are named sha256(cwd), Cursor CLI chats md5(cwd): directories
    # seen elsewhere are the hint.
    known = frozenset({"/tmp/tracesd-demo/gemini-legacy", "/tmp/tracesd-demo/cursor-cli"})
    adapter = adapters_for(config)[case["agent"]]
    path = fixture_home / case["path"].removeprefix("home/")
    rel = relative(adapter, path)
    assert rel is not None

    if case.get("is_subagent"):
        assert not adapter.matches(rel)
        assert adapter.parse(str(path)).traces == []
        return

    assert adapter.matches(rel)
    # A store (SQLite) holds many sessions; a file, one.
    found = adapter.parse(str(path), known).traces
    [meta] = [m for m in found if m.trace_id == case["session_id"]]
    assert meta.agent_id == case["agent"]
    assert meta.directory == case["cwd"]
    assert meta.title == case["title"]
    # null in expected.json: the file does not say (the adapter's own tests pin what
    # stands in: the file's mtime, or the agent's other store)
    created = CLI_CREATED.get(case["id"], case["created"])
    for got, want in ((meta.created, created), (meta.timestamp, case.get("updated"))):
        assert got == to_ms(want) if want is not None else got is not None
    assert meta.source_path == str(path)
    want_model = None if case["id"] in NO_CLI_MODEL else case.get("model")
    assert meta.model == CLI_MODEL.get(case["id"], want_model)


def test_codex_fixture_carries_the_agents_own_git_record(
    fixture_home: Path, make_config: Callable[..., Config]
) -> None:
    codex = adapters_for(make_config(environ={"HOME": str(fixture_home)}))["codex"]
    [path] = (fixture_home / ".codex" / "sessions").rglob("rollout-*.jsonl")
    [meta] = codex.parse(str(path)).traces
    assert meta.agent_git == GitInfo(
        "https://github.com/example/tracesd-demo-codex.git",
        "main",
        "4d3c2b1a0f9e8d7c6b5a49382716050f4e3d2c1b",
    )


def test_side_files_are_not_sessions(config: Config) -> None:
    """History files, indexes, meta files and temp files never match."""
    a = adapters_for(config)
    assert not a["claude-code"].matches("history.jsonl")
    assert not a["claude-code"].matches("proj/sessions-index.json")
    assert not a["claude-code"].matches("proj/agent-abc.jsonl")
    assert not a["claude-code"].matches("proj/uuid/subagents/agent-abc.jsonl")
    assert not a["claude-code"].matches("proj/uuid/tool-results/x.jsonl")
    assert a["claude-code"].matches("proj/uuid.jsonl")
    assert a["codex"].matches("2026/11/20/rollout-x.jsonl")
    assert a["codex"].matches("rollout-x.jsonl")  # archived_sessions is flat
    assert not a["codex"].matches("2026/11/20/rollout-x.jsonl.zst")
    assert not a["gemini-cli"].matches("proj/logs.json")
    assert not a["gemini-cli"].matches("proj/chats/parent/child.jsonl")
    assert a["gemini-cli"].matches("proj/chats/session-2026-11-20T09-20-abc.jsonl")


def test_roots_honour_agent_env_vars_and_config(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(
        environ={
            "CLAUDE_CONFIG_DIR": f"{tmp_path}/c1,{tmp_path}/c2",
            "CODEX_HOME": f"{tmp_path}/cx",
            "GEMINI_CLI_HOME": f"{tmp_path}/g",
        }
    )
    a = adapters_for(config)
    assert a["claude-code"].roots() == (f"{tmp_path}/c1/projects", f"{tmp_path}/c2/projects")
    assert a["codex"].roots() == (f"{tmp_path}/cx/sessions", f"{tmp_path}/cx/archived_sessions")
    assert a["gemini-cli"].roots() == (f"{tmp_path}/g/.gemini/tmp",)
    override = make_config(agents__roots={"codex": str(tmp_path / "elsewhere")})
    assert adapters_for(override)["codex"].roots() == (str(tmp_path / "elsewhere"),)


def test_default_roots_live_under_home(config: Config) -> None:
    a = adapters_for(config)
    home = str(config.home)
    assert a["claude-code"].roots()[0] == f"{home}/.claude/projects"
    assert a["codex"].roots()[0] == f"{home}/.codex/sessions"
    assert a["gemini-cli"].roots() == (f"{home}/.gemini/tmp",)


# ------------------------------------------------------------------------ claude-code


def claude(config: Config) -> Adapter:
    return adapters_for(config)["claude-code"]


def write_lines(path: Path, records: list[Any], tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records
    )
    path.write_bytes(body + tail)
    return path


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "user",
        "cwd": "/w",
        "message": {"role": "user", "content": content},
        "timestamp": "2026-11-20T10:00:00.000Z",
        **extra,
    }


def test_torn_last_line_is_ignored_until_complete(config: Config, tmp_path: Path) -> None:
    """A half-written last line is not read; once its newline lands, it is."""
    path = tmp_path / "p" / "s.jsonl"
    late = json.dumps(user("second", timestamp="2026-11-20T11:00:00.000Z")).encode()
    write_lines(path, [user("first")], tail=late[:30])
    [meta] = claude(config).parse(str(path)).traces
    assert (meta.title, meta.timestamp) == ("first", to_ms("2026-11-20T10:00:00.000Z"))

    with path.open("ab") as f:
        f.write(late[30:] + b"\n")
    [meta] = claude(config).parse(str(path)).traces
    assert meta.timestamp == to_ms("2026-11-20T11:00:00.000Z")
    assert meta.preview == "second"


def test_only_torn_line_is_not_a_session_yet(config: Config, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p" / "s.jsonl", [], tail=b'{"type":"user","cwd":"/w"')
    assert claude(config).parse(str(path)).traces == []


def test_empty_file_is_skipped_with_a_reason(config: Config, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p" / "s.jsonl", [])
    assert _try_parse(claude(config), path) == "empty"


def test_binary_garbage_is_a_parse_error(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    path.write_bytes(os.urandom(4096).replace(b"\n", b"\x00") + b"\n\x00\x01\n")
    with pytest.raises(ParseError) as info:
        claude(config).parse(str(path))
    assert info.value.reason == "binary"


def test_malformed_json_lines_are_a_parse_error(config: Config, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p" / "s.jsonl", [b'{"a":', b"[1,2", b"NaNx"])
    with pytest.raises(ParseError) as info:
        claude(config).parse(str(path))
    assert info.value.reason == "malformed"


def test_malformed_lines_among_good_ones_are_skipped(config: Config, tmp_path: Path) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    path = write_lines(
        tmp_path / "p" / "s.jsonl", [b"{oops", nested, b"\xff\xfe", user("real prompt")]
    )
    [meta] = claude(config).parse(str(path)).traces
    assert meta.title == "real prompt"


def test_the_lines_a_parse_passed_over_come_back_with_its_result_or_its_error(
    config: Config, tmp_path: Path
) -> None:
    """Each skipped line, with why and its byte range, is part of what parse returns; a
    file with nothing usable raises, and the error carries them the same way."""
    bad, binary = b"{oops", b"\x00\x01"
    path = write_lines(tmp_path / "p" / "s.jsonl", [bad, binary, user("real prompt")])
    parsed = claude(config).parse(str(path))
    assert [m.title for m in parsed.traces] == ["real prompt"]
    second = len(bad) + 1
    assert parsed.skipped == (
        SkippedLine("malformed", 0, second),
        SkippedLine("binary", second, second + len(binary) + 1),
    )

    only_bad = write_lines(tmp_path / "p" / "bad.jsonl", [bad])
    with pytest.raises(ParseError) as info:
        claude(config).parse(str(only_bad))
    assert info.value.reason == "malformed"
    assert info.value.skipped == (SkippedLine("malformed", 0, second),)


def test_a_huge_line_is_skipped_without_reading_it_into_memory(
    config: Config, tmp_path: Path
) -> None:
    """A 50 MB tool result line is passed over; the session around it is read."""
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    with path.open("wb") as f:
        f.write(json.dumps(user("before the big one")).encode() + b"\n")
        f.write(b'{"type":"user","toolUseResult":"' + b"x" * (50 * 1024 * 1024) + b'"}\n')
        f.write(
            json.dumps(
                {
                    "type": "assistant",
                    "message": {"content": "done"},
                    "timestamp": "2026-11-20T12:00:00.000Z",
                }
            ).encode()
            + b"\n"
        )
    [meta] = claude(config).parse(str(path)).traces
    assert meta.title == "before the big one"
    assert meta.timestamp == to_ms("2026-11-20T12:00:00.000Z")


def test_a_file_that_is_only_a_huge_line_is_oversize(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"x":"' + b"y" * (MAX_LINE + 10) + b'"}\n')
    assert _try_parse(claude(config), path) == "oversize"
    with SessionFile(str(path)) as f:
        assert list(f.head_lines()) == []
        assert f.oversize_lines == 1


def test_fifo_named_like_a_session_never_blocks(config: Config, tmp_path: Path) -> None:
    """A FIFO is refused at once instead of blocking the reader forever."""
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    os.mkfifo(path)
    outcome: list[Any] = []
    reader = threading.Thread(target=lambda: outcome.append(_try_parse(claude(config), path)))
    reader.start()
    reader.join(5)
    assert not reader.is_alive()
    assert outcome == ["not_a_file"]


def _try_parse(adapter: Adapter, path: Path) -> Any:
    try:
        return adapter.parse(str(path)).traces
    except ParseError as exc:
        return exc.reason


def test_vanished_file_is_a_vanished_parse_error(config: Config, tmp_path: Path) -> None:
    assert _try_parse(claude(config), tmp_path / "nope.jsonl") == "vanished"


def test_directory_named_like_a_session_is_not_a_file(config: Config, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").mkdir()
    assert _try_parse(claude(config), tmp_path / "d.jsonl") == "not_a_file"


def test_claude_title_skips_tool_results_commands_and_wrappers(
    config: Config, tmp_path: Path
) -> None:
    """The title is the first real prompt, whatever envelopes come before it."""
    path = write_lines(
        tmp_path / "p" / "s.jsonl",
        [
            {"type": "summary", "summary": "A previous session", "leafUuid": "x"},
            user("<command-name>/clear</command-name>"),
            user("Caveat: The messages below were generated by the user"),
            user("meta", isMeta=True),
            user([{"type": "tool_result", "content": "ok"}]),
            user("<ide_opened_file>a.py</ide_opened_file>"),
            user(
                [
                    {"type": "text", "text": "<ide_selection>x</ide_selection>"},
                    {"type": "text", "text": "Explain\n\nthis   function"},
                ]
            ),
            user("not this one"),
        ],
    )
    [meta] = claude(config).parse(str(path)).traces
    assert meta.title == "Explain this function"


def test_claude_title_is_one_line_and_bounded(config: Config, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p" / "s.jsonl", [user("word\u2028 " * 300 + "\x1b[31m")])
    [meta] = claude(config).parse(str(path)).traces
    assert meta.title is not None
    assert len(meta.title) == TITLE_MAX
    assert meta.title.endswith("…")
    assert "\u2028" not in meta.title
    assert "\n" not in meta.title


def test_claude_sidechain_transcript_is_not_a_trace(config: Config, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p" / "s.jsonl", [user("sub", isSidechain=True)])
    assert claude(config).parse(str(path)).traces == []


def assistant(model: str | None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    if model is not None:
        message["model"] = model
    return {"type": "assistant", "cwd": "/w", "message": message, **extra}


def test_claude_model_is_the_first_assistant_model_and_a_later_sidechain_is_not_the_session(
    config: Config, tmp_path: Path
) -> None:
    """The model is the first real assistant message's (`<synthetic>` is Claude Code's own
    stand-in); reading on to find it, a sidechain record interleaved after the prompt (older
    Claude Code wrote subagent turns into the session) neither hides the session nor names
    its model."""
    path = write_lines(
        tmp_path / "p" / "s.jsonl",
        [
            user("main prompt"),
            assistant("<synthetic>"),
            user("sub prompt", isSidechain=True),
            assistant("claude-haiku-4-5", isSidechain=True),
            *[user(f"filler {i}") for i in range(50)],
            assistant("claude-sonnet-4-5"),
            assistant("claude-opus-4-5"),
        ],
    )
    [meta] = claude(config).parse(str(path)).traces
    assert (meta.title, meta.model) == ("main prompt", "claude-sonnet-4-5")
    no_model = write_lines(tmp_path / "q" / "s.jsonl", [user("hi"), assistant(None)])
    [meta] = claude(config).parse(str(no_model)).traces
    assert (meta.title, meta.model) == ("hi", None)


def test_claude_id_is_the_file_name_and_cwd_comes_from_content(config: Config, home: Path) -> None:
    session_id, path = claude_session(home, "/a/b-c/d.e", "hi")
    [meta] = claude(config).parse(str(path)).traces
    assert (meta.trace_id, meta.directory) == (session_id, "/a/b-c/d.e")


# ------------------------------------------------------------------------------ codex


def codex_file(tmp_path: Path, records: list[Any]) -> Path:
    return write_lines(tmp_path / "2026" / "11" / "20" / "rollout-x.jsonl", records)


def meta_line(**payload: Any) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-20T09:00:00.000Z",
        "type": "session_meta",
        "payload": {"id": "c1", "timestamp": "2026-11-20T09:00:00.000Z", "cwd": "/w", **payload},
    }


def event(kind: str, message: str, ts: str = "2026-11-20T09:00:05.000Z") -> dict[str, Any]:
    return {"timestamp": ts, "type": "event_msg", "payload": {"type": kind, "message": message}}


def test_codex_subagent_rollout_is_not_a_trace(config: Config, tmp_path: Path) -> None:
    path = codex_file(
        tmp_path, [meta_line(source={"subagent": "review"}), event("user_message", "x")]
    )
    assert adapters_for(config)["codex"].parse(str(path)).traces == []


def test_codex_title_strips_leading_envelopes(config: Config, tmp_path: Path) -> None:
    text = "<environment_context>\n<cwd>/w</cwd>\n</environment_context>\nRename the module"
    path = codex_file(tmp_path, [meta_line(), event("user_message", text)])
    [meta] = adapters_for(config)["codex"].parse(str(path)).traces
    assert meta.title == "Rename the module"


def test_codex_without_session_meta_yet_is_not_a_trace(config: Config, tmp_path: Path) -> None:
    path = codex_file(tmp_path, [event("user_message", "x")])
    assert adapters_for(config)["codex"].parse(str(path)).traces == []


def test_codex_last_activity_and_preview_come_from_the_tail(config: Config, tmp_path: Path) -> None:
    path = codex_file(
        tmp_path,
        [
            meta_line(),
            event("user_message", "Do it"),
            event("agent_message", "Done it", ts="2026-11-20T09:30:00.000Z"),
        ],
    )
    [meta] = adapters_for(config)["codex"].parse(str(path)).traces
    assert (meta.preview, meta.timestamp) == ("Done it", to_ms("2026-11-20T09:30:00.000Z"))


# ------------------------------------------------------------------------- gemini-cli


def gemini(config: Config) -> Adapter:
    return adapters_for(config)["gemini-cli"]


def gemini_project(home: Path, slug: str, root: str | None = None) -> Path:
    project = home / ".gemini" / "tmp" / slug
    (project / "chats").mkdir(parents=True)
    if root is not None:
        (project / ".project_root").write_text(root + "\n")
    return project


def gmeta(**extra: Any) -> dict[str, Any]:
    return {
        "sessionId": "g1",
        "projectHash": "h",
        "startTime": "2026-11-20T09:00:00.000Z",
        "lastUpdated": "2026-11-20T09:00:00.000Z",
        **extra,
    }


def gmsg(id: str, text: str, kind: str = "user") -> dict[str, Any]:
    return {
        "id": id,
        "timestamp": "2026-11-20T09:00:01.000Z",
        "type": kind,
        "content": [{"text": text}],
    }


def test_gemini_session_before_the_first_prompt_has_no_title(config: Config, home: Path) -> None:
    """The file exists at CLI start: a trace without a title, for now."""
    project = gemini_project(home, "app", "/w/app")
    path = write_lines(project / "chats" / "session-1.jsonl", [gmeta()])
    [meta] = gemini(config).parse(str(path)).traces
    assert (meta.title, meta.directory) == (None, "/w/app")


def test_gemini_rewind_drops_the_rewound_prompt(config: Config, home: Path) -> None:
    project = gemini_project(home, "app", "/w/app")
    path = write_lines(
        project / "chats" / "session-1.jsonl",
        [
            gmeta(),
            gmsg("m1", "/resume"),
            gmsg("m2", "first try"),
            {"$rewindTo": "m2"},
            gmsg("m3", "second try"),
        ],
    )
    [meta] = gemini(config).parse(str(path)).traces
    assert meta.title == "second try"


def test_gemini_subagent_recording_is_not_a_trace(config: Config, home: Path) -> None:
    project = gemini_project(home, "app", "/w/app")
    path = write_lines(project / "chats" / "session-1.jsonl", [gmeta(kind="subagent")])
    assert gemini(config).parse(str(path)).traces == []


def test_gemini_legacy_json_next_to_its_migrated_jsonl_is_skipped(
    config: Config, home: Path
) -> None:
    """Resuming an old .json session writes .jsonl beside it: one trace, not two."""
    project = gemini_project(home, "app", "/w/app")
    old = project / "chats" / "session-1.json"
    old.write_text(json.dumps({**gmeta(), "messages": [gmsg("m1", "hi")]}))
    write_lines(project / "chats" / "session-1.jsonl", [gmeta(), gmsg("m1", "hi")])
    assert gemini(config).parse(str(old)).traces == []


def test_gemini_directory_from_the_projects_registry(config: Config, home: Path) -> None:
    project = gemini_project(home, "app-1")
    (home / ".gemini" / "projects.json").write_text(json.dumps({"projects": {"/w/app": "app-1"}}))
    path = write_lines(project / "chats" / "session-1.jsonl", [gmeta()])
    [meta] = gemini(config).parse(str(path)).traces
    assert meta.directory == "/w/app"


def test_gemini_legacy_hash_directory_resolves_through_siblings(
    config: Config, home: Path, tmp_path: Path
) -> None:
    """sha256(cwd) is matched against siblings of directories seen in other traces."""
    import hashlib

    code = tmp_path / "code"
    (code / "known").mkdir(parents=True)
    (code / "legacy-app").mkdir()
    digest = hashlib.sha256(str(code / "legacy-app").encode()).hexdigest()
    project = gemini_project(home, digest)
    path = project / "chats" / "session-1.json"
    path.write_text(json.dumps({**gmeta(projectHash=digest), "messages": [gmsg("m", "old")]}))
    [meta] = gemini(config).parse(str(path), frozenset({str(code / "known")})).traces
    assert meta.directory == str(code / "legacy-app")


def test_gemini_unresolvable_legacy_hash_leaves_directory_unknown(
    config: Config, home: Path
) -> None:
    project = gemini_project(home, "0" * 64)
    path = project / "chats" / "session-1.json"
    path.write_text(json.dumps({**gmeta(), "messages": [gmsg("m", "old")]}))
    [meta] = gemini(config).parse(str(path)).traces
    assert (meta.directory, meta.title) == (None, "old")


def test_gemini_half_rewritten_legacy_json_is_incomplete(config: Config, home: Path) -> None:
    project = gemini_project(home, "app", "/w/app")
    path = project / "chats" / "session-1.json"
    path.write_text(json.dumps({**gmeta(), "messages": [gmsg("m", "x")]})[:40])
    assert _try_parse(gemini(config), path) == "incomplete"


def test_gemini_large_legacy_json_is_read_only_in_part(config: Config, home: Path) -> None:
    """A legacy document bigger than the read cap still yields its id, times and prompt."""
    project = gemini_project(home, "app", "/w/app")
    path = project / "chats" / "session-1.json"
    big = [gmsg("m0", "the first prompt")] + [
        gmsg(f"m{i}", "x" * 100_000, "gemini") for i in range(1, 120)
    ]
    write_atomic(path, json.dumps({**gmeta(), "messages": big}, indent=2))
    assert path.stat().st_size > 8 * 1024 * 1024
    [meta] = gemini(config).parse(str(path)).traces
    assert (meta.trace_id, meta.title) == ("g1", "the first prompt")
    assert meta.created == to_ms("2026-11-20T09:00:00.000Z")


def test_tail_finds_the_last_activity_behind_a_long_last_line(
    config: Config, tmp_path: Path
) -> None:
    """A last record longer than the first tail window is still read."""
    long_reply = {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": "r" * 40_000}]},
        "timestamp": "2026-11-20T13:00:00.000Z",
    }
    path = write_lines(tmp_path / "p" / "s.jsonl", [user("go"), long_reply])
    [meta] = claude(config).parse(str(path)).traces
    assert meta.timestamp == to_ms("2026-11-20T13:00:00.000Z")
    assert meta.preview == "r" * 499 + "…"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:00:00Z", 1795168800000),
        ("2026-11-20T10:00:00", 1795168800000),
        (1795168800, 1795168800000),
        (1795168800000, 1795168800000),
        (1e30, None),
        (-5, None),
        (float("nan"), None),
        ("not a date", None),
        (True, None),
        (None, None),
    ],
)
def test_timestamps_are_read_in_any_form_and_absurd_ones_dropped(
    value: Any, expected: int | None
) -> None:
    """A timestamp SQLite could not store (or that means nothing) is no timestamp."""
    assert to_ms(value) == expected
