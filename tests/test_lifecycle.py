"""A real `tracesd run` against what is already on disk and what else runs: one daemon per
database (even started at the same instant), a socket path that is not a stale socket of
ours, a socket directory someone else planted, private file modes, SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, claude_session, db_path, isolated_env, runtime_dir, tracesd
from tracesd.status.socket import request

StartDaemon = Callable[..., Daemon]
NOBODY = 65534

#: waits for the barrier file to appear, then becomes the command given after it
BARRIER = """
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
os.execv(sys.argv[2], sys.argv[2:])
"""


def sock(home: Path) -> Path:
    return runtime_dir(home) / "tracesd" / "tracesd.sock"


def ready(daemon: Daemon) -> Daemon:
    daemon.wait_ready()
    daemon.wait_for_event("status.listening")
    return daemon


def ask(path: Path) -> dict[str, Any]:
    return asyncio.run(request(path, "GET", "/status"))


def snapshot(path: Path) -> tuple[Any, ...]:
    """Everything about what is at `path` that a removal or a rewrite would change."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        content: Any = os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        content = sorted((p.name, p.read_bytes()) for p in path.iterdir())
    elif stat.S_ISREG(st.st_mode):
        content = path.read_bytes()
    else:
        content = None
    return (st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, content)


def exited(daemon: Daemon, timeout: float = 30.0) -> tuple[int, str]:
    """The exit code of a daemon expected to refuse to start, and what it printed."""
    try:
        code = daemon.proc.wait(timeout)
    except Exception:
        daemon.kill()
        raise AssertionError(f"it did not refuse:\n{daemon.log_path.read_text()}") from None
    return code, daemon.log_path.read_text()


def write_config(home: Path, text: str) -> None:
    path = home / ".config" / "tracesd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------ the socket path


def _regular_file(path: Path) -> None:
    path.write_text("my notes: do not delete\n")


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("kept\n")


def _symlink_to_a_file(path: Path) -> None:
    target = path.with_name("target.txt")
    target.write_text("the target\n")
    path.symlink_to(target)


def _symlink_to_nothing(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere"))


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _someone_elses_stale_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


@pytest.mark.parametrize(
    "plant",
    [
        _regular_file,
        _directory,
        _symlink_to_a_file,
        _symlink_to_nothing,
        _fifo,
        _someone_elses_stale_socket,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_socket_path_that_is_not_a_stale_socket_of_ours_is_refused_and_left_untouched(
    daemons: StartDaemon, home: Path, plant: Callable[[Path], None]
) -> None:
    """`--socket ~/notes.txt` must not delete the notes: exit 2, one line naming the key."""
    path = runtime_dir(home) / "planted"
    plant(path)
    target = path.with_name("target.txt")
    before = snapshot(path), (snapshot(target) if target.exists() else None)
    code, out = exited(daemons(home, "--socket", str(path)))
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("tracesd: config error: status.socket_path: ")
    assert str(path) in lines[0]
    assert "left untouched" in lines[0]
    assert (snapshot(path), (snapshot(target) if target.exists() else None)) == before


@pytest.mark.parametrize("home_mode", [0o755, 0o700])
def test_socket_notes_txt_in_home_deletes_nothing_and_leaves_the_home_mode_alone(
    daemons: StartDaemon, home: Path, home_mode: int
) -> None:
    """The issue's `--socket ~/notes.txt`: a 0755 home is not chmod-ed (refused: a socket
    needs a directory only we can enter), a 0700 one is fine but the notes are no socket."""
    home.chmod(home_mode)
    notes = home / "notes.txt"
    _regular_file(notes)
    before = snapshot(notes)
    code, out = exited(daemons(home, "--socket", "~/notes.txt"))
    assert code == 2, out
    [line] = out.strip().splitlines()
    assert line.startswith("tracesd: config error: status.socket_path: ")
    expected = "is your home directory" if home_mode == 0o755 else "is a regular file"
    assert expected in line
    assert snapshot(notes) == before
    assert stat.S_IMODE(home.stat().st_mode) == home_mode


def test_the_live_socket_of_a_daemon_on_another_database_is_not_taken(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    first = ready(daemons(home))
    before = snapshot(sock(home))
    write_config(home, f'[storage]\ndb_path = "{tmp_path / "other" / "traces.db"}"\n')
    code, out = exited(daemons(home))  # its own database, the same socket
    assert code == 1, out
    assert f"already running (pid {first.proc.pid}, socket {sock(home)})" in out
    assert snapshot(sock(home)) == before
    assert ask(sock(home))["pid"] == first.proc.pid


# ----------------------------------------------------------- one daemon per database


def _barrier_daemons(home: Path, barrier: Path, count: int) -> list[Daemon]:
    prefix = [sys.executable, "-c", BARRIER, str(barrier)]
    return [Daemon(home, prefix=prefix) for _ in range(count)]


@pytest.fixture
def barrier_started() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def test_of_daemons_started_at_the_same_instant_exactly_one_runs_and_a_kill_9_frees_the_lock(
    home: Path, tmp_path: Path, barrier_started: list[Daemon]
) -> None:
    """5 `tracesd run` released together, 3 times; each round after `kill -9` of the last
    round's winner (the kernel drops its flock: the next one starts at once)."""
    (home / ".claude" / "projects").mkdir(parents=True)
    db = db_path(home)
    for round_ in range(3):
        barrier = tmp_path / f"go-{round_}"
        group = _barrier_daemons(home, barrier, 5)
        barrier_started.extend(group)
        time.sleep(0.5)  # every one is waiting at the barrier
        barrier.touch()
        deadline = time.monotonic() + 60
        while sum(d.proc.poll() is None for d in group) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        [winner] = [d for d in group if d.proc.poll() is None]
        for loser in group:
            if loser is winner:
                continue
            code, out = exited(loser)
            assert code == 1, out
            assert out.strip().splitlines() == [
                f"tracesd: tracesd is already running (pid {winner.proc.pid}, lock {db}.lock)"
            ]
        ready(winner)
        session_id, _ = claude_session(home, tmp_path, f"round {round_}")
        assert winner.row(session_id)
        assert ask(sock(home))["pid"] == winner.proc.pid
        assert (db.parent / "traces.db.lock").read_text() == f"{winner.proc.pid}\n"
        winner.proc.send_signal(signal.SIGKILL)
        winner.proc.wait(10)


def test_a_second_spelling_of_the_same_database_is_the_same_lock(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    (home / ".claude" / "projects").mkdir(parents=True)
    first = ready(daemons(home))
    alias = tmp_path / "alias"
    alias.symlink_to(db_path(home).parent)
    config = home / ".config" / "alias.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[storage]\ndb_path = "{alias / "traces.db"}"\n')
    other_socket = runtime_dir(home) / "other.sock"
    code, out = exited(daemons(home, "--config", str(config), "--socket", str(other_socket)))
    assert code == 1, out
    lock = db_path(home).with_name("traces.db.lock")
    assert out.strip().splitlines() == [
        f"tracesd: tracesd is already running (pid {first.proc.pid}, lock {lock})"
    ]
    assert not other_socket.exists()


def test_of_daemons_on_two_databases_sharing_a_socket_started_together_one_runs(
    home: Path, tmp_path: Path, barrier_started: list[Daemon]
) -> None:
    """No lock is shared here: the socket itself decides, and a daemon binding it never
    removes the live socket of the other (asyncio's create_unix_server would)."""
    (home / ".claude" / "projects").mkdir(parents=True)
    configs = []
    for name in ("a", "b"):
        config = home / ".config" / f"{name}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'[storage]\ndb_path = "{tmp_path / name / "traces.db"}"\n')
        configs.append(config)
    for round_ in range(3):
        barrier = tmp_path / f"go-{round_}"
        prefix = [sys.executable, "-c", BARRIER, str(barrier)]
        group = [Daemon(home, "--config", str(c), prefix=prefix) for c in configs]
        barrier_started.extend(group)
        time.sleep(0.5)
        barrier.touch()
        deadline = time.monotonic() + 60
        while all(d.proc.poll() is None for d in group) and time.monotonic() < deadline:
            time.sleep(0.05)
        [winner] = [d for d in group if d.proc.poll() is None]
        [loser] = [d for d in group if d is not winner]
        code, out = exited(loser)
        assert code == 1, out
        assert f"already running (pid {winner.proc.pid}, socket {sock(home)})" in out or (
            f"already running (pid unknown, socket {sock(home)})" in out
        )
        ready(winner)
        assert ask(sock(home))["pid"] == winner.proc.pid
        winner.stop()


# ---------------------------------------------------------- the socket's directory


def test_a_socket_directory_owned_by_another_user_is_refused(
    daemons: StartDaemon, home: Path
) -> None:
    planted = runtime_dir(home) / "tracesd"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, NOBODY, NOBODY)
    code, out = exited(daemons(home))
    assert code == 2, out
    [line] = out.strip().splitlines()
    assert line.startswith("tracesd: config error: status.socket_path: ")
    assert f"{planted} belongs to uid {NOBODY}" in line
    assert list(planted.iterdir()) == []
    assert stat.S_IMODE(planted.stat().st_mode) == 0o777  # not ours to change


def test_a_directory_above_it_that_anyone_may_write_is_refused(
    daemons: StartDaemon, home: Path
) -> None:
    """Not sticky, world-writable: another user could rename our directory and plant one."""
    shared = runtime_dir(home) / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = shared / "mine" / "t.sock"
    code, out = exited(daemons(home, "--socket", str(path)))
    assert code == 2, out
    assert f"{shared}, above {path.parent}, is writable by every user" in out


def test_a_loose_socket_directory_of_ours_is_tightened_to_0700(
    daemons: StartDaemon, home: Path
) -> None:
    directory = sock(home).parent
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = ready(daemons(home))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert daemon.events("private.directory_tightened")[0]["path"] == str(directory)
    assert ask(sock(home))["pid"] == daemon.proc.pid


# ----------------------------------------------------------------- private modes


def _db_files(db: Path) -> list[Path]:
    return [db, *(db.with_name(db.name + end) for end in ("-wal", "-shm", ".lock"))]


@pytest.mark.parametrize("existing_db", [False, True], ids=["new-db", "db-left-0644"])
def test_the_database_its_wal_shm_and_lock_are_0600_and_doctor_warns_on_a_looser_one(
    daemons: StartDaemon, home: Path, existing_db: bool
) -> None:
    db = db_path(home)
    db.parent.mkdir(mode=0o755, parents=True)
    db.parent.chmod(0o755)
    if existing_db:  # an older release, a restored backup, a file made by hand
        db.touch()
        db.chmod(0o644)
        db.with_name("traces.db-wal").touch()
        db.with_name("traces.db-wal").chmod(0o644)
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = ready(daemons(home))
    daemon.row(claude_session(home, home, "a prompt")[0])
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in _db_files(db)}
    assert modes == dict.fromkeys(modes, "0o600")
    assert len(modes) == 4

    db.with_name("traces.db-shm").chmod(0o644)
    result = tracesd(home, "doctor", "--json")
    report = json.loads(result.stdout)
    [check] = [c for c in report["checks"] if c["name"] == "permissions"]
    assert check["status"] == "warn", check
    assert f"{db}-shm is 0o644" in check["detail"]
    assert f"chmod 600 {db}-shm" in check["fix"]
    assert result.returncode == 0  # a warning, like doctor's others


def test_doctor_says_the_database_files_are_private(daemons: StartDaemon, home: Path) -> None:
    (home / ".claude" / "projects").mkdir(parents=True)
    ready(daemons(home))
    text = tracesd(home, "doctor").stdout
    assert "ok    permissions" in text


# ----------------------------------------------------------------------- signals


def test_sighup_is_logged_once_and_the_daemon_keeps_running(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    (home / ".claude" / "projects").mkdir(parents=True)
    daemon = ready(daemons(home, env=isolated_env(home)))
    daemon.signal(signal.SIGHUP)
    event = daemon.wait_for_event("daemon.sighup_ignored")
    assert event["level"] == "warning"
    assert "restart" in event["hint"]
    assert ask(sock(home))["pid"] == daemon.proc.pid
    daemon.row(claude_session(home, tmp_path, "after the hangup")[0])
    assert len(daemon.events("daemon.sighup_ignored")) == 1
    assert daemon.stop() == 0


def test_a_daemon_that_stops_leaves_no_lock_file_and_the_next_one_starts(
    daemons: StartDaemon, home: Path
) -> None:
    (home / ".claude" / "projects").mkdir(parents=True)
    lock = db_path(home).with_name("traces.db.lock")
    first = ready(daemons(home))
    assert lock.read_text() == f"{first.proc.pid}\n"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert first.stop() == 0
    assert not lock.exists()
    second = ready(daemons(home))
    assert ask(sock(home))["pid"] == second.proc.pid
