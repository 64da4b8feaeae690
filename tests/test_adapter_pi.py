"""Pi: sessions are read from the header line and the entries around it, real files only."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, Daemon, git, make_repo
from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._text import to_ms
from tracesd.capture.adapters.pi import Pi
from tracesd.config import Config
from tracesd.errors import ParseError

PI_CASES = [
    s
    for s in json.loads((FIXTURES / "expected.json").read_text())["sessions"]
    if s["agent"] == "pi"
]
CWD = "/work/my-app"
T0 = "2026-11-20T09:00:00.000Z"


def sessions_dir(home: Path) -> Path:
    return home / ".pi" / "agent" / "sessions"


def header(
    session_id: str = "6d0c9f7e-0000-4000-8000-000000000001", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "session",
        "version": 3,
        "id": session_id,
        "timestamp": T0,
        "cwd": CWD,
        **extra,
    }


def message(role: str, content: Any, ts: str = "2026-11-20T09:00:05.000Z") -> dict[str, Any]:
    return {
        "type": "message",
        "id": uuid.uuid4().hex[:8],
        "parentId": None,
        "timestamp": ts,
        "message": {"role": role, "content": content, "timestamp": to_ms(ts)},
    }


def session_file(
    home: Path, records: list[Any], *, name: str | None = None, tail: bytes = b""
) -> Path:
    project = sessions_dir(home) / "--work-my-app--"
    project.mkdir(parents=True, exist_ok=True)
    path = project / (name or f"2026-11-20T09-00-00-000Z_{uuid.uuid4()}.jsonl")
    body = b"".join(
        (r if isinstance(r, bytes) else json.dumps(r, separators=(",", ":")).encode()) + b"\n"
        for r in records
    )
    path.write_bytes(body + tail)
    return path


def reason(adapter: Pi, path: Path) -> str:
    with pytest.raises(ParseError) as info:
        adapter.parse(str(path))
    return info.value.reason


@pytest.fixture
def pi(config: Config) -> Pi:
    return Pi(config)


# ------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("case", PI_CASES, ids=[c["id"] for c in PI_CASES])
def test_fixture_session_is_read_exactly(
    case: dict[str, Any], home: Path, make_config: Callable[..., Config]
) -> None:
    shutil.copytree(FIXTURES / "home" / ".pi", home / ".pi")
    adapter = Pi(make_config(environ={"HOME": str(home)}))
    path = home / case["path"].removeprefix("home/")
    [root] = adapter.roots()
    rel = str(path.relative_to(root))
    assert adapter.matches(rel)
    [meta] = adapter.parse(str(path)).traces
    assert meta.agent_id == case["agent"] == "pi"
    assert meta.trace_id == case["session_id"]
    assert meta.directory == case["cwd"]
    assert meta.title == case["title"]
    assert meta.created == to_ms(case["created"])
    assert meta.timestamp == to_ms(case["updated"])
    assert meta.preview == "Created deploy.py with argparse subcommands."
    assert meta.agent_git is None
    assert meta.source_path == str(path)


# --------------------------------------------------------------------------- roots


def test_default_root_is_under_home_on_linux_and_macos(
    pi: Pi, home: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pi.roots() == (str(sessions_dir(home)),)
    monkeypatch.setattr(_roots, "PLATFORM", "darwin")
    assert Pi(make_config()).roots() == (str(sessions_dir(home)),)
    assert pi.depth(pi.roots()[0]) == 2


def test_pi_coding_agent_dir_moves_the_root(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(environ={"PI_CODING_AGENT_DIR": str(tmp_path / "agent")})
    assert Pi(config).roots() == (str(tmp_path / "agent" / "sessions"),)


def test_config_root_override_wins(make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config(
        environ={"PI_CODING_AGENT_DIR": str(tmp_path / "agent")},
        agents__roots={"pi": str(tmp_path / "session-dir")},
    )
    assert Pi(config).roots() == (str(tmp_path / "session-dir"),)


# ------------------------------------------------------------------------- matches


@pytest.mark.parametrize(
    "rel",
    [
        "--home-u-app--/2026-11-20T09-30-11-482Z_6d0c9f7e-2b1a-4c3d-8e9f-a0b1c2d3e4f5.jsonl",
        "2026-11-20T09-30-11-482Z_6d0c9f7e-2b1a-4c3d-8e9f-a0b1c2d3e4f5.jsonl",  # --session-dir
    ],
)
def test_matches_session_files(pi: Pi, rel: str) -> None:
    assert pi.matches(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "--home-u-app--/.2026-11-20_x.jsonl.swp",
        "--home-u-app--/.hidden.jsonl",
        "--home-u-app--/2026-11-20_x.jsonl.tmp",
        "--home-u-app--/2026-11-20_x.json",
        "--home-u-app--/sub/2026-11-20_x.jsonl",
        "/2026-11-20_x.jsonl",
        "--home-u-app--/",
    ],
)
def test_rejects_temp_hidden_and_other_files(pi: Pi, rel: str) -> None:
    assert not pi.matches(rel)


# ------------------------------------------------------------------------- content


def test_cwd_comes_from_the_header_not_the_lossy_directory_name(pi: Pi, home: Path) -> None:
    project = sessions_dir(home) / "--a-b-c--"
    project.mkdir(parents=True)
    path = project / "2026-11-20T09-00-00-000Z_x.jsonl"
    path.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (header(cwd="/a/b-c"), message("user", "go"), message("assistant", "ok"))
        )
    )
    [meta] = pi.parse(str(path)).traces
    assert meta.directory == "/a/b-c"


def test_title_skips_non_user_roles_and_image_only_prompts(pi: Pi, home: Path) -> None:
    path = session_file(
        home,
        [
            header(),
            {"type": "model_change", "id": "a", "parentId": None, "timestamp": T0},
            {"type": "custom_message", "customType": "x", "content": "injected", "display": True},
            message("custom", "from an extension"),
            message("bashExecution", "ls"),
            message("user", [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]),
            message("user", [{"type": "text", "text": "  Rename the\n\nmodule  "}]),
            message("assistant", [{"type": "text", "text": "Done."}]),
            message("user", "not this one"),
        ],
    )
    [meta] = pi.parse(str(path)).traces
    assert meta.title == "Rename the module"


def test_expanded_skill_command_is_titled_by_its_arguments(pi: Pi, home: Path) -> None:
    block = '<skill name="review" location="/s/review/SKILL.md">\nLong skill body\n</skill>'
    with_args = session_file(
        home, [header(), message("user", block + "\n\nCheck the parser"), message("assistant", "k")]
    )
    bare = session_file(home, [header(), message("user", block), message("assistant", "k")])
    assert pi.parse(str(with_args)).traces[0].title == "Check the parser"
    assert pi.parse(str(bare)).traces[0].title == "/skill:review"


def test_last_activity_and_preview_come_from_the_newest_entries(pi: Pi, home: Path) -> None:
    path = session_file(
        home,
        [
            header(),
            message("user", "Start"),
            message("assistant", [{"type": "text", "text": "Working"}]),
            message("toolResult", [{"type": "text", "text": "tool output"}]),
            message(
                "assistant", [{"type": "text", "text": "All done"}], "2026-11-20T10:00:00.000Z"
            ),
            {"type": "label", "id": "l", "parentId": None, "timestamp": "2026-11-20T10:05:00.000Z"},
        ],
    )
    [meta] = pi.parse(str(path)).traces
    assert meta.preview == "All done"
    assert meta.timestamp == to_ms("2026-11-20T10:05:00.000Z")
    assert meta.created == to_ms(T0)


def test_v1_session_without_ids_is_read(pi: Pi, home: Path) -> None:
    """Old sessions: no version, no entry ids; the header id names them."""
    sid = "0a1b2c3d-0000-4000-8000-00000000abcd"
    v1 = {"type": "session", "id": sid, "timestamp": T0, "cwd": CWD, "provider": "anthropic"}
    plain = {"type": "message", "timestamp": T0, "message": {"role": "user", "content": "Old"}}
    path = session_file(home, [v1, plain])
    [meta] = pi.parse(str(path)).traces
    assert (meta.trace_id, meta.title, meta.directory) == (sid, "Old", CWD)


def test_header_without_an_id_takes_the_id_in_the_file_name(pi: Pi, home: Path) -> None:
    sid = "0a1b2c3d-0000-4000-8000-00000000abce"
    path = session_file(
        home,
        [{"type": "session", "timestamp": T0, "cwd": ""}, message("user", "x")],
        name=f"2026-11-20T09-00-00-000Z_{sid}.jsonl",
    )
    [meta] = pi.parse(str(path)).traces
    assert (meta.trace_id, meta.directory) == (sid, None)


def test_header_alone_is_not_a_trace_yet(pi: Pi, home: Path) -> None:
    """Pi writes a bare header when it repairs an empty file."""
    assert pi.parse(str(session_file(home, [header()]))).traces == []


def test_fork_is_its_own_trace_titled_by_its_own_first_prompt(pi: Pi, home: Path) -> None:
    """Entries copied from the parent predate the fork's header and never title it."""
    parent = session_file(
        home, [header(), message("user", "Parent prompt"), message("assistant", "a")]
    )
    fork_id = "6d0c9f7e-0000-4000-8000-00000000f0f0"
    copied = [message("user", "Parent prompt"), message("assistant", "a")]
    fork_header = header(fork_id, timestamp="2026-11-20T11:00:00.000Z", parentSession=str(parent))
    path = session_file(home, [fork_header, *copied])
    [meta] = pi.parse(str(path)).traces
    assert (meta.trace_id, meta.title) == (fork_id, None)
    assert meta.created == to_ms("2026-11-20T11:00:00.000Z")

    with path.open("a") as f:
        f.write(
            json.dumps(message("user", "Try it differently", "2026-11-20T11:00:09.000Z")) + "\n"
        )
    [meta] = pi.parse(str(path)).traces
    assert (meta.trace_id, meta.title) == (fork_id, "Try it differently")
    [parent_meta] = pi.parse(str(parent)).traces
    assert parent_meta.trace_id != fork_id


def test_migration_rewrite_keeps_one_trace_id(pi: Pi, home: Path) -> None:
    """v1 -> v3 rewrites the file whole (it may shrink); same header id, same trace."""
    sid = "6d0c9f7e-0000-4000-8000-00000000aaaa"
    v1 = {"type": "session", "id": sid, "timestamp": T0, "cwd": CWD}
    old = {"type": "message", "timestamp": T0, "message": {"role": "user", "content": "Hi " * 500}}
    path = session_file(home, [v1, old, old], name=f"2026-11-20T09-00-00-000Z_{sid}.jsonl")
    [before] = pi.parse(str(path)).traces
    size = path.stat().st_size

    with path.open("r+b") as f:  # writeFileSync: truncate, then write in place
        f.truncate(0)
        f.write(
            (json.dumps(header(sid)) + "\n" + json.dumps(message("user", "Hi")) + "\n").encode()
        )
    assert path.stat().st_size < size
    [after] = pi.parse(str(path)).traces
    assert after.trace_id == before.trace_id == sid
    assert after.title == "Hi"


# -------------------------------------------------------------------------- errors


def test_empty_file_is_empty(pi: Pi, home: Path) -> None:
    assert reason(pi, session_file(home, [])) == "empty"


def test_binary_file_is_binary(pi: Pi, home: Path) -> None:
    path = session_file(home, [])
    path.write_bytes(os.urandom(2048).replace(b"\n", b"\x00") + b"\n\x00\x01\n")
    assert reason(pi, path) == "binary"


def test_garbage_lines_are_malformed(pi: Pi, home: Path) -> None:
    assert reason(pi, session_file(home, [b'{"type":', b"[1,2", b"nope"])) == "malformed"


def test_jsonl_without_a_session_header_is_malformed(pi: Pi, home: Path) -> None:
    path = session_file(home, [message("user", "no header"), header()])
    assert reason(pi, path) == "malformed"


def test_half_written_first_line_is_not_a_session_yet(pi: Pi, home: Path) -> None:
    path = session_file(home, [], tail=json.dumps(header()).encode()[:40])
    assert pi.parse(str(path)).traces == []


def test_torn_last_line_is_ignored_until_complete(pi: Pi, home: Path) -> None:
    late = json.dumps(message("assistant", "Late reply", "2026-11-20T12:00:00.000Z")).encode()
    path = session_file(home, [header(), message("user", "Go")], tail=late[:25])
    [meta] = pi.parse(str(path)).traces
    assert (meta.preview, meta.timestamp) == ("Go", to_ms("2026-11-20T09:00:05.000Z"))
    with path.open("ab") as f:
        f.write(late[25:] + b"\n")
    [meta] = pi.parse(str(path)).traces
    assert (meta.preview, meta.timestamp) == ("Late reply", to_ms("2026-11-20T12:00:00.000Z"))


def test_vanished_file_is_vanished(pi: Pi, home: Path) -> None:
    assert reason(pi, sessions_dir(home) / "--x--" / "gone.jsonl") == "vanished"


# ---------------------------------------------------------------------- end to end


def test_daemon_captures_a_new_pi_session_with_git_context(
    daemons: Callable[..., Daemon], home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "pi-repo", remote="https://github.com/acme/pi-app.git")
    sessions_dir(home).mkdir(parents=True)
    daemon = daemons(home)
    daemon.wait_ready()

    sid = str(uuid.uuid4())
    project = sessions_dir(home) / ("--" + str(repo).lstrip("/").replace("/", "-") + "--")
    project.mkdir()
    lines = [
        header(sid, cwd=str(repo)),
        message("user", [{"type": "text", "text": "Port the CLI to click"}]),
        message("assistant", [{"type": "text", "text": "Ported."}]),
    ]
    # Pi's first flush: the buffered prefix, appended at once after the first reply
    with (project / f"2026-11-20T09-00-00-000Z_{sid}.jsonl").open("a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))

    row = daemon.row(sid)
    assert (row["agent_id"], row["directory"], row["title"]) == (
        "pi",
        str(repo),
        "Port the CLI to click",
    )
    assert row["git_remote_url"] == "https://github.com/acme/pi-app"
    assert row["git_branch"] == "main"
    assert row["git_ref"] == git(repo, "rev-parse", "HEAD")
    assert daemon.stop() == 0
