"""Issue 10, 2.1: a FIFO, a device, a socket or a directory wherever we expect a file.

`mkfifo .git/HEAD` in a session's repository (or a FIFO as Copilot's `workspace.json`,
Gemini's `.project_root`) used to block worker threads in open() for good: nothing stored,
status `ok`, SIGTERM ignored, `tracesd scan` hung. Expected now, for every reader of a
foreign path: it never blocks and never reads a device; the file is refused with a logged
reason and counted; the session it belongs to is still stored (with what can be known);
everything else keeps flowing; SIGTERM stops the daemon and `tracesd scan` finishes.

Each reader is first tried in-process on its own thread (a hang fails the join instead of
the run), then the daemon and the scan command are tried whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    FIXTURE_TRACES,
    Daemon,
    claude_session,
    db_path,
    fixture_home,
    git,
    isolated_env,
    make_repo,
    query,
    tracesd,
)
from tracesd.capture.adapters import Adapter, build_adapters
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.git.context import GitResolver
from tracesd.models import GitInfo

StartDaemon = Callable[..., Daemon]
KINDS = ("fifo", "char_device", "socket", "directory")
#: a reader that hangs fails here, long before pytest-timeout
JOIN_S = 20.0
GIT_TIMEOUT_S = 1.0

COPILOT_WS = ".config/Code/User/workspaceStorage/3f7c2a9e1b5d4c8f6a0e2b4d6f8a1c3e"
COPILOT_SESSION = f"{COPILOT_WS}/chatSessions/2b4d6f8a-0c1e-4a3b-9d5f-7e9a1c3b5d7f.jsonl"
GEMINI_PROJECT = ".gemini/tmp/gemini-cli"
GEMINI_SESSION = f"{GEMINI_PROJECT}/chats/session-2026-11-20T09-20-4b7e2f10.jsonl"
OPENCODE_DB = ".local/share/opencode/opencode.db"
CURSOR_CLI_DB = (
    ".cursor/chats/362f4748a5734d0df6adda062941df74/3c5e7a9b-0d2f-4a6c-8e1b-3d5f7a9c0e2b/store.db"
)


# ------------------------------------------------------------------------- helpers


def plant(path: Path, kind: str) -> None:
    """Replace `path` with a special file of `kind` (a character device as a symlink to
    /dev/zero or /dev/urandom: creating one needs root)."""
    if path.is_symlink() or path.is_file() or path.is_fifo() or path.is_socket():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "char_device":
        path.symlink_to("/dev/urandom" if path.name == "HEAD" else "/dev/zero")
    elif kind == "socket":
        # bound under a short path (AF_UNIX paths are short), then moved into place
        short = Path(tempfile.mkdtemp(prefix="tdsock-")) / "s"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(short))
        os.replace(short, path)
        short.parent.rmdir()
    elif kind == "directory":
        path.mkdir()
    else:
        raise AssertionError(kind)


def release_fifos(root: Path) -> None:
    """Give every FIFO under `root` a writer that leaves at once: a reader still blocked
    in open() (on the old code) sees end-of-file and its thread can end."""
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not Path(path).is_fifo():
                continue
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading it
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def in_thread(call: Callable[[], Any], *, released: Path) -> Any:
    """`call()` on its own thread; fails (instead of hanging) if it takes over JOIN_S."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except ParseError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN_S)
    blocked = thread.is_alive()
    if blocked:
        release_fifos(released)
        thread.join(5)
    assert not blocked, f"the reader was still blocked after {JOIN_S}s"
    assert outcome, "the reader raised (see the thread's traceback)"
    return outcome[0]


def adapter(config: Config, agent: str) -> Adapter:
    [found] = [a for a in build_adapters(config) if a.agent_id == agent]
    return found


# ----------------------------------------------------- every reader, every special kind


def _session_file(home: Path, kind: str) -> Path:
    path = home / ".claude" / "projects" / "p" / "special.jsonl"
    plant(path, kind)
    return path


READERS = [
    "claude_session_file",
    "copilot_session_file",
    "copilot_workspace_json",
    "copilot_code_workspace",
    "gemini_project_root",
    "gemini_projects_json",
    "opencode_store",
    "opencode_store_journal",
    "opencode_store_wal",
    "cursor_cli_store",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", READERS)
def test_no_adapter_reader_blocks_or_reads_a_special_file(
    reader: str, kind: str, tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Pass: the parse ends at once; a special session file or store is `not_a_file`
    (saying what it is); a special side file is passed over and the session is still
    read, with its directory as far as another source knows it, never a device's bytes."""
    home = fixture_home(tmp_path / "fixture-home")
    config = make_config(environ={"HOME": str(home)})
    agent, path = {
        "claude_session_file": ("claude-code", None),
        "copilot_session_file": ("copilot", COPILOT_SESSION),
        "copilot_workspace_json": ("copilot", f"{COPILOT_WS}/workspace.json"),
        "copilot_code_workspace": ("copilot", "work/app.code-workspace"),
        "gemini_project_root": ("gemini-cli", f"{GEMINI_PROJECT}/.project_root"),
        "gemini_projects_json": ("gemini-cli", ".gemini/projects.json"),  # no .project_root
        "opencode_store": ("opencode", OPENCODE_DB),
        "opencode_store_journal": ("opencode", OPENCODE_DB + "-journal"),
        "opencode_store_wal": ("opencode", OPENCODE_DB + "-wal"),
        "cursor_cli_store": ("cursor", CURSOR_CLI_DB),
    }[reader]
    session = {
        "copilot": COPILOT_SESSION,
        "gemini-cli": GEMINI_SESSION,
        "opencode": OPENCODE_DB,
        "cursor": CURSOR_CLI_DB,
    }
    if reader == "claude_session_file":
        target = _session_file(home, kind)
    else:
        assert path is not None
        if reader == "copilot_code_workspace":
            workspace = {"configuration": f"file://{home}/{path}"}
            (home / COPILOT_WS / "workspace.json").write_text(json.dumps(workspace))
        if reader == "gemini_projects_json":
            (home / GEMINI_PROJECT / ".project_root").unlink()
        plant(home / path, kind)
        target = home / session[agent]
    try:
        outcome = in_thread(lambda: adapter(config, agent).parse(str(target)).traces, released=home)
    finally:
        release_fifos(home)

    if reader in (
        "claude_session_file",
        "copilot_session_file",
        "opencode_store",
        "cursor_cli_store",
    ):
        assert isinstance(outcome, ParseError)
        expected = "symlink" if kind == "char_device" and "session" in reader else kind
        assert outcome.reason == "not_a_file"
        assert f"({expected})" in str(outcome)
    elif reader.startswith("opencode_store_"):
        # A special file where SQLite opens the store's journal or log: the store is
        # refused (SQLite itself would block on a FIFO `-journal`).
        assert isinstance(outcome, ParseError)
        assert outcome.reason == "not_a_file"
    else:
        assert not isinstance(outcome, ParseError), outcome
        assert outcome, "the session is still read"
        for meta in outcome:
            assert meta.directory is None or meta.directory.startswith("/tmp/tracesd-demo/")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "where", ["HEAD", "config", "refs/heads/main", "packed-refs", "commondir", "gitdir_file"]
)
def test_no_git_lookup_blocks_on_a_special_file(where: str, kind: str, tmp_path: Path) -> None:
    """Pass: the lookup (our reads of the repository and every git run) ends by the git
    deadline; where git would meet a special file it is not run and every field is None;
    otherwise each field is what git could answer, or None."""
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")  # packed-refs exists; the loose ref is gone
    directory = repo
    if where in ("commondir", "gitdir_file"):
        directory = tmp_path / "linked"
        git(repo, "worktree", "add", "-q", "-b", "side", str(directory))
        gitdir = repo / ".git" / "worktrees" / "linked"
        plant(gitdir / "commondir" if where == "commondir" else directory / ".git", kind)
    else:
        plant(repo / ".git" / where, kind)
    resolver = GitResolver(timeout_s=GIT_TIMEOUT_S, environ=isolated_env(tmp_path / "home"))

    started = time.monotonic()
    try:
        info = in_thread(lambda: asyncio.run(resolver.lookup(str(directory))), released=tmp_path)
    finally:
        release_fifos(tmp_path)
    took = time.monotonic() - started

    assert took < GIT_TIMEOUT_S + 5.0  # the deadline, plus reaping git on a busy machine
    if where == "gitdir_file":
        # no repository pointer: not a repository (an empty `.git` directory: git says so)
        assert info in (None, GitInfo(None, None, None))
    else:
        assert info == GitInfo(None, None, None)  # git is not asked at all
    assert sha


# ----------------------------------------------------------- the daemon and `scan` whole


GIT_VARIANTS = {
    "head-fifo": ("HEAD", "fifo"),
    "config-fifo": ("config", "fifo"),
    "ref-fifo": ("refs/heads/main", "fifo"),
    "packed-fifo": ("packed-refs", "fifo"),
    "head-urandom": ("HEAD", "char_device"),
    "ref-zero": ("refs/heads/main", "char_device"),
    "config-zero": ("config", "char_device"),
}


@pytest.fixture
def killed_at_end(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons are killed, and FIFOs released, whatever the test's outcome."""
    started: list[Daemon] = []
    yield started
    release_fifos(tmp_path)
    for daemon in started:
        daemon.kill()


def run_scan(home: Path) -> dict[str, Any]:
    """`tracesd scan --json` into a fresh database; fails (TimeoutExpired) if it hangs."""
    for leftover in db_path(home).parent.glob("traces.db*"):
        leftover.unlink()
    done = tracesd(home, "scan", "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def status(home: Path) -> dict[str, Any]:
    done = tracesd(home, "status", "--json")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_special_files_in_repositories_never_stop_capture_sigterm_or_scan(
    home: Path, tmp_path: Path, killed_at_end: list[Daemon]
) -> None:
    """Pass, with a FIFO or a device as HEAD, config, the branch ref or packed-refs of
    seven sessions' repositories: the startup scan finishes; all seven sessions are stored
    with NULL git fields (one `gitinfo.failed` `special_file` each), a session in a clean
    repository with its own; status counts the refused files and shows them; a session
    written later is captured; SIGTERM stops the daemon within 10 s; `tracesd scan` into
    a fresh database finishes with every session."""
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"[capture]\ngit_timeout_s = {GIT_TIMEOUT_S}\n")
    sessions: dict[str, str] = {}
    for name, (where, kind) in GIT_VARIANTS.items():
        repo = make_repo(tmp_path / name)
        if where == "packed-refs":
            git(repo, "pack-refs", "--all")
        plant(repo / ".git" / where, kind)
        sessions[name], _ = claude_session(home, repo, f"in {name}")
    clean = make_repo(tmp_path / "clean")
    clean_sha = git(clean, "rev-parse", "HEAD")
    sessions["clean"], _ = claude_session(home, clean, "in a clean repository")

    daemon = Daemon(home)
    killed_at_end.append(daemon)
    daemon.wait_for_event("scan.finished", timeout=60, where=lambda e: e["reason"] == "startup")
    for name, trace_id in sessions.items():
        row = daemon.row(trace_id, timeout=30)
        fields = (row["git_remote_url"], row["git_branch"], row["git_ref"])
        if name == "clean":
            assert fields == ("https://github.com/example/project", "main", clean_sha)
        else:
            assert fields == (None, None, None), name
    failed = [e for e in daemon.events("gitinfo.failed") if e["reason"] == "special_file"]
    assert len(failed) == len(GIT_VARIANTS)
    later, _ = claude_session(home, clean, "written while running")
    assert daemon.row(later, timeout=30)["git_ref"] == clean_sha

    answer = status(home)
    assert answer["state"] == "ok"
    refused = answer["capture"]["refused_by_kind"]
    assert refused == {"fifo": 4, "char_device": 3}
    assert answer["git"]["failures"] == len(GIT_VARIANTS)
    text = tracesd(home, "status").stdout
    assert "7 special files refused unread (char_device 3, fifo 4)" in text

    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - started < 10

    report = run_scan(home)
    assert (report["new"], report["errors"]) == (len(sessions) + 1, 0)


def test_special_files_in_agent_trees_are_refused_counted_and_the_rest_captured(
    tmp_path: Path, killed_at_end: list[Daemon]
) -> None:
    """Pass, with a FIFO as Copilot's workspace.json and Gemini's .project_root, /dev/zero
    as Cursor's workspace.json, and a FIFO, a socket or a device link named like a session
    in five agents' roots (some there at start, some made while running): every fixture
    session is stored (Copilot's without a directory, Gemini's from its registry); each
    special session file is one `ingest.parse_failed` `not_a_file` and counted; each side
    file one `files.refused`; SIGTERM stops the daemon; `tracesd scan` finishes."""
    home = fixture_home(tmp_path / "home")
    plant(home / COPILOT_WS / "workspace.json", "fifo")
    plant(home / GEMINI_PROJECT / ".project_root", "fifo")
    cursor_ws = home / ".config/Cursor/User/workspaceStorage/b6e1c8f4a2d9e7035c1f8b4a6d2e9c70"
    plant(cursor_ws / "workspace.json", "char_device")
    special_sessions = [
        home / ".claude/projects/-tmp-special/0f8b6d1e-0000-4e7b-9a51-3d2c1b0a9e87.jsonl",
        home / ".codex/sessions/2026/11/20/rollout-2026-11-20T09-14-05-019aa1b2-0000.jsonl",
        home / GEMINI_PROJECT / "chats/session-2026-11-21T09-20-0000aaaa.jsonl",
        home / COPILOT_WS / "chatSessions/00000000-0c1e-4a3b-9d5f-7e9a1c3b5d7f.jsonl",
        home / ".local/share/opencode/storage/session/special/ses_special.json",
    ]
    for path, kind in zip(special_sessions[:3], ("fifo", "socket", "fifo"), strict=True):
        plant(path, kind)

    daemon = Daemon(home, env=isolated_env(home))
    killed_at_end.append(daemon)
    daemon.wait_for_event("scan.finished", timeout=60, where=lambda e: e["reason"] == "startup")
    for path in special_sessions[3:]:
        plant(path, "fifo")  # made while running: the watcher's events
    later, _ = claude_session(home, tmp_path, "after the special files")
    assert daemon.row(later, timeout=30)["title"] == "after the special files"

    def stored() -> set[tuple[str, str]]:
        rows = query(daemon.db, "SELECT agent_id, id FROM traces")
        return {(r["agent_id"], r["id"]) for r in rows}

    deadline = time.monotonic() + 30
    while not stored() >= FIXTURE_TRACES and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored() >= FIXTURE_TRACES, FIXTURE_TRACES - stored()
    directories = {
        (r["agent_id"], r["directory"])
        for r in query(daemon.db, "SELECT agent_id, directory FROM traces")
    }
    assert ("copilot", None) in directories
    assert ("gemini-cli", "/tmp/tracesd-demo/gemini-cli") in directories

    def refused_paths() -> set[str]:
        failed = daemon.events("ingest.parse_failed")
        return {e["path"] for e in failed if e["reason"] == "not_a_file"}

    deadline = time.monotonic() + 30
    while len(refused_paths()) < len(special_sessions) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused_paths() == {str(p) for p in special_sessions}
    assert len(daemon.events("ingest.parse_failed")) == len(special_sessions)
    side = {e["path"]: e["kind"] for e in daemon.events("files.refused")}
    assert side == {
        str(home / COPILOT_WS / "workspace.json"): "fifo",
        str(home / GEMINI_PROJECT / ".project_root"): "fifo",
        str(cursor_ws / "workspace.json"): "char_device",
    }

    capture = status(home)["capture"]
    assert capture["errors_by_reason"] == {"not_a_file": len(special_sessions)}
    assert capture["refused_by_kind"] == {"fifo": 2, "char_device": 1}

    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - started < 10

    report = run_scan(home)
    assert report["errors"] == len(special_sessions)
    assert report["new"] == len(FIXTURE_TRACES) + 1


def test_a_special_file_as_the_database_is_refused_not_waited_on(home: Path) -> None:
    """Pass: a FIFO where the database belongs stops `tracesd scan` at once with exit 1
    and a message naming it (the open used to wait for a writer forever)."""
    db = db_path(home)
    db.parent.mkdir(parents=True)
    os.mkfifo(db)
    try:
        done = tracesd(home, "scan")
    finally:
        release_fifos(home)
    assert done.returncode != 0
    assert "is a fifo, not a database file" in done.stderr


def test_sigterm_stops_a_daemon_whose_git_is_reading_a_fifo(
    home: Path, tmp_path: Path, killed_at_end: list[Daemon]
) -> None:
    """Pass: with a FIFO that git itself reads (an `include.path` of the repository's
    config: not one of the files we check), the session is stored once the git deadline
    kills git (NULL fields), and SIGTERM during a later hung lookup stops the daemon
    within 10 s."""
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[capture]\ngit_timeout_s = 3.0\n")
    repo = make_repo(tmp_path / "included")
    os.mkfifo(tmp_path / "included.cfg")
    with (repo / ".git" / "config").open("a") as f:
        f.write(f"[include]\n\tpath = {tmp_path / 'included.cfg'}\n")
    first, _ = claude_session(home, repo, "git reads a fifo")
    daemon = Daemon(home)
    killed_at_end.append(daemon)
    row = daemon.row(first, timeout=60)
    assert (row["git_remote_url"], row["git_branch"], row["git_ref"]) == (None, None, None)
    daemon.wait_for_event("gitinfo.timeout", timeout=30)

    with (repo / ".git" / "config").open("a") as f:
        f.write("# changed: the fingerprint moves, git is asked again\n")
    claude_session(home, repo, "a second one")
    time.sleep(0.5)  # git is (most likely) blocked on the FIFO now
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert time.monotonic() - started < 10
