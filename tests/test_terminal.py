"""Nothing a terminal obeys reaches one (issue 10, 2.6): escape sequences and bidi
overrides in trace ids, branches, remote URLs, directories, agent roots, the database
path and a sync server's error text are shown escaped by `list`, `status`, `doctor` and
the console log; `--json` stays exact JSON with no such byte either."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import Daemon, claude_session, git, isolated_env, make_repo, runtime_dir
from tracesd import logs, terminal

#: ESC CSI (red), the C1 CSI U+009B, OSC (a window title) ended by BEL, DEL, a
#: RIGHT-TO-LEFT OVERRIDE, a FIRST STRONG ISOLATE, a LINE SEPARATOR, a zero-width joiner
EVIL = "\x1b[31m\x9b2J\x1b]0;pwned\x07\x7f\u202e\u2068\u2028\u200d"
#: what git takes in a branch name: no C0 control or DEL, but C1 and format characters
EVIL_BRANCH = "\x9b31m\u202e\u2066\u200f"
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def unsafe(output: bytes, *, keep: str = "\n") -> list[str]:
    """The characters of `output` a terminal could obey (undecodable bytes count)."""
    text = output.decode("utf-8", "surrogateescape")
    return sorted({c for c in text if c not in keep and unicodedata.category(c) in UNSAFE})


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tracesd", *args], env=env, capture_output=True, timeout=60
    )


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def evil_home(tmp_path: Path) -> Iterator[Path]:
    """A HOME whose own name carries the sequences: every path under it does too."""
    home = tmp_path / f"home{EVIL}"
    home.mkdir()
    yield home
    shutil.rmtree(runtime_dir(home), ignore_errors=True)


def test_escape_sequences_reach_no_terminal_through_list_status_doctor_or_the_log(
    daemons: Callable[..., Daemon], evil_home: Path, fault: ThreadedFaultServer
) -> None:
    """Pass: a daemon logging in the console format captures a session whose id, working
    directory, remote URL (ESC, CSI, OSC, DEL, U+202E, ...) and branch (C1 CSI, bidi
    controls: what git allows) carry the sequences, under a HOME (database path, agent
    roots) that carries them too, and syncs to a server whose error text carries them;
    the stdout of `list`, `status` and `doctor` and the daemon's console log hold none of
    them (newlines between lines aside) and show them escaped (`\\x1b`, `\\u202e`); the
    `--json` outputs hold none either, and give back the exact values."""
    home = evil_home
    trace_id = f"{EVIL}session"
    plain_id = "plain-session"

    def plan(p: Plan) -> None:
        p.error_text = f"rejected {EVIL} by the server"
        p.item_status = {trace_id: 422, plain_id: 503}

    fault.call(plan, fault.server.plan)
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[sync]\napi_url = "{fault.url}"\nscope = "all"\ninterval_s = 0.3\nmax_backoff_s = 0.5\n'
    )
    env = isolated_env(home, TRACES_API_KEY="sk-terminal")
    (home / ".claude" / "projects").mkdir(parents=True)
    remote = f"https://host.example/r{EVIL}.git"
    stored = f"https://host.example/r{EVIL}"  # canonical (INTERFACE section 5)
    repo = make_repo(home / f"project{EVIL}", remote=remote)
    git(repo, "checkout", "-q", "-b", f"feature{EVIL_BRANCH}")
    daemon = daemons(home, "--log-format", "console", env=env)
    claude_session(home, repo, f"title {EVIL}", session_id=trace_id)
    claude_session(home, repo, "a plain one", session_id=plain_id)

    def synced() -> dict[str, Any] | None:
        done = cli(home, env, "status", "--json")
        if done.returncode != 0:
            return None
        answer: dict[str, Any] = json.loads(done.stdout)
        sync = answer["sync"]
        return answer if sync["failures"] and sync["last_error"] else None

    status_json = wait_for(synced, "a refused and a failed sync")
    outputs = {
        "list": cli(home, env, "list"),
        "status": cli(home, env, "status"),
        "doctor": cli(home, env, "doctor"),
    }
    jsons = {
        "list --json": cli(home, env, "list", "--json"),
        "status --json": cli(home, env, "status", "--json"),
        "doctor --json": cli(home, env, "doctor", "--json"),
    }
    assert daemon.stop() == 0
    log = daemon.log_path.read_bytes()

    for name, done in outputs.items():
        assert done.stdout, (name, done.stderr)
        assert unsafe(done.stdout) == [], name
        assert unsafe(done.stderr) == [], name
    assert unsafe(log) == []
    assert b"\\x1b[31m" in log  # the session's path, escaped
    listed = outputs["list"].stdout.decode()
    assert "\\x1b[31m\\x9b2J" in listed  # the id
    assert f"feature{terminal.escape(EVIL_BRANCH)}" in listed
    assert terminal.escape(stored.removeprefix("https://")) in listed
    shown = outputs["status"].stdout.decode()
    assert f"rejected {terminal.escape(EVIL)} by the server" in shown
    assert terminal.escape(str(home)) in outputs["doctor"].stdout.decode()

    for name, done in jsons.items():
        assert unsafe(done.stdout.removesuffix(b"\n"), keep="") == [], name
    traces = {t["id"]: t for t in json.loads(jsons["list --json"].stdout)["traces"]}
    assert traces[trace_id]["git_branch"] == f"feature{EVIL_BRANCH}"
    assert traces[trace_id]["git_remote_url"] == stored
    assert traces[trace_id]["directory"] == str(repo)
    # the server's text is foreign input: made printable where it is read (tracesd.answers)
    assert any(terminal.escape(EVIL) in f["error"] for f in status_json["sync"]["failures"])


def test_escape_makes_every_unsafe_class_visible() -> None:
    """Each class is replaced by its Python escape; printable text, accents and CJK stay."""
    assert terminal.escape("a\x1bb\x9bc\x7fd\x00e\u202ef\u2066g\u200dh\u2028i\n") == (
        "a\\x1bb\\x9bc\\x7fd\\x00e\\u202ef\\u2066g\\u200dh\\u2028i\\n"
    )
    assert terminal.escape("\udcff\U000e0001") == "\\udcff\\U000e0001"
    assert terminal.escape("café 東京 ok ~") == "café 東京 ok ~"
    assert terminal.text("one\x1b\ntwo\tthree") == "one\\x1b\ntwo\tthree"


def test_json_log_lines_escape_every_unsafe_character_and_stay_exact() -> None:
    """The JSON log format needs no terminal step: json.dumps (ensure_ascii) writes each
    control and format character as a \\u escape, and the line parses back exactly."""
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    try:
        structlog.get_logger("tracesd.test").warning("test.evil", path=EVIL, branch=EVIL_BRANCH)
    finally:
        logging.getLogger().handlers = []
    line = stream.getvalue().removesuffix("\n")
    assert unsafe(line.encode(), keep="") == []
    event = json.loads(line)
    assert (event["path"], event["branch"]) == (EVIL, EVIL_BRANCH)
