"""tracesd's own database (INTERFACE 2 and 5): its paths, and the takeover of an earlier
install's `~/.traces/traces.db` (moved whole, or copied out of a file the Traces CLI has
adopted), crash-safe and under a lock. Real SQLite files, real `tracesd` processes, and the
real Traces CLI where it is installed (`make traces-cli`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Daemon,
    claude_session,
    commit,
    db_path,
    fixture_home,
    isolated_env,
    legacy_db_path,
    make_repo,
    query,
    tracesd,
)
from tests.tracescli import require_traces_cli
from tracesd.cli import scan_once
from tracesd.config import StorageConfig, load_config
from tracesd.store import migrations, takeover

#: what tracesd keeps of its own besides `traces`
OURS = ("tracesd_files", "tracesd_outbox", "tracesd_sync_state")
#: the order each table's rows are compared in
KEYS = {"traces": "id", "tracesd_files": "path", "tracesd_outbox": "trace_id"}
KEYS["tracesd_sync_state"] = "key"


def build_legacy(home: Path) -> Path:
    """An earlier install: `tracesd scan` into ~/.traces/traces.db, as releases before
    tracesd had its own database did (the schema of the time is this one's, version 4)."""
    config = load_config(environ=isolated_env(home))
    legacy = config.storage.legacy_path
    storage = StorageConfig(db_path=legacy, legacy_path=legacy)
    asyncio.run(scan_once(dataclasses.replace(config, storage=storage)))
    with sqlite3.connect(legacy) as conn:
        conn.execute("INSERT INTO tracesd_sync_state VALUES ('backoff', '{\"failures\": 2}')")
    conn.close()
    return legacy


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    """tracesd's rows: every trace with every column, and its bookkeeping."""
    return {t: query(db, f"SELECT * FROM {t} ORDER BY {k}") for t, k in KEYS.items()}


def scan(home: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`tracesd scan --json`: its counts and its log events."""
    done = tracesd(home, "scan", "--json", "--log-level", "info", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), events(done.stderr)


def list_(home: Path) -> list[dict[str, Any]]:
    """`tracesd list`, which takes over too but writes no row: its log events."""
    done = tracesd(home, "list", "--json", "--log-level", "info", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    return events(done.stderr)


def events(text: str, name: str | None = None) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and (name is None or event.get("event") == name):
            found.append(event)
    return found


def named(found: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in found if e.get("event") == name]


def tracesd_objects(db: Path) -> list[str]:
    rows = query(
        db,
        "SELECT name FROM sqlite_master WHERE name LIKE 'tracesd%'"
        " OR name IN ('traces_git_remote_url', 'traces_timestamp') ORDER BY name",
    )
    return [r["name"] for r in rows]


def user_version(db: Path) -> int:
    return int(query(db, "PRAGMA user_version")[0]["user_version"])


def sessions_in_a_repo(home: Path, tmp_path: Path, count: int = 3) -> tuple[list[str], str]:
    """Claude sessions in a real repository (so the git columns have values): ids, HEAD."""
    repo = make_repo(tmp_path / "repo", branch="feat/x")
    head = commit(repo)
    ids = []
    for i in range(count):
        session_id, path = claude_session(home, repo, f"prompt {i}")
        hour_ago = time.time() - 3600  # not racy: a scan that saw it need not read it again
        os.utime(path, (hour_ago, hour_ago))
        ids.append(session_id)
    return ids, head


def adopt_by_hand(legacy: Path) -> None:
    """What the Traces CLI's first `traces list` does to tracesd's file, in its essentials:
    its own tables, its version (16 in 0.6.31)."""
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, trace_id TEXT, event_json TEXT)")
        conn.execute("CREATE TABLE store_metadata (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO store_metadata VALUES ('api_endpoint', 'https://x.example')")
        conn.execute("CREATE TABLE indexes (agent_id TEXT PRIMARY KEY, cursor_json TEXT)")
        conn.execute("ALTER TABLE traces ADD COLUMN remote_url TEXT")
        conn.execute("PRAGMA user_version = 16")
    conn.close()


# --------------------------------------------------------------------------- paths


def test_a_daemon_scan_list_status_and_doctor_leave_nothing_under_dot_traces(
    home: Path, tmp_path: Path
) -> None:
    ids, _ = sessions_in_a_repo(home, tmp_path, count=1)
    daemon = Daemon(home)
    try:
        daemon.wait_ready()
        assert daemon.row(ids[0])["git_branch"] == "feat/x"
        for command in (["scan"], ["list"], ["status"], ["doctor"]):
            tracesd(home, *command)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert db_path(home).is_file()
    assert not (home / ".traces").exists()


# ------------------------------------------------------------------ moved whole


def test_an_earlier_tracesd_file_is_moved_whole_with_its_wal_and_dot_traces_is_left_empty(
    home: Path, tmp_path: Path
) -> None:
    fixture_home(home)
    sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    # A last commit still in the WAL (no checkpoint at exit, as after a crash).
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
            " c.execute('PRAGMA wal_autocheckpoint = 0');"
            " c.execute(\"INSERT INTO tracesd_sync_state VALUES ('in-wal', 'yes')\"); os._exit(0)",
            str(legacy),
        ],
        check=True,
    )
    assert legacy.with_name("traces.db-wal").stat().st_size > 0
    before = snapshot(legacy)
    assert {"in-wal", "backoff"} <= {r["key"] for r in before["tracesd_sync_state"]}

    [event] = named(list_(home), "store.takeover")
    assert (event["mode"], event["rows"], event["from"]) == ("moved", 18, str(legacy))
    assert event["to"] == str(db_path(home))
    assert snapshot(db_path(home)) == before
    counts, found = scan(home)
    assert named(found, "store.takeover") == []  # once
    assert counts["unchanged"] == counts["discovered"]  # what it had read, it still knows
    assert not (home / ".traces").exists()
    assert stat.S_IMODE(db_path(home).stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path(home).parent.stat().st_mode) == 0o700


def test_the_daemon_takes_an_earlier_file_over_at_start(
    home: Path, tmp_path: Path, daemons: Any
) -> None:
    ids, head = sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    before = snapshot(legacy)
    daemon = daemons(home)
    daemon.wait_ready()
    [event] = daemon.events("store.takeover")
    assert (event["mode"], event["rows"]) == ("moved", 3)
    assert snapshot(db_path(home))["traces"] == before["traces"]
    assert {daemon.row(i)["git_ref"] for i in ids} == {head}
    assert not legacy.exists()


# ---------------------------------------------------------------- the CLI's own


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_the_traces_clis_own_file_at_its_version_4_is_never_touched(
    home: Path, tmp_path: Path, journal: str
) -> None:
    """The CLI's real version 4 (no updated_at, no tracesd table): byte for byte as it was,
    nothing created beside it, and tracesd works in its own file."""
    legacy = legacy_db_path(home)
    legacy.parent.mkdir()
    with sqlite3.connect(legacy) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        conn.execute(
            "CREATE TABLE traces (id TEXT PRIMARY KEY, agent_id TEXT, title TEXT, preview TEXT,"
            " timestamp INTEGER, directory TEXT, source_path TEXT, shared_url TEXT,"
            " shared_visibility TEXT, created_at INTEGER NOT NULL)"
        )
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, trace_id TEXT)")
        conn.execute("INSERT INTO traces (id, agent_id, created_at) VALUES ('cli', 'codex', 1)")
        conn.execute("PRAGMA user_version = 4")
    conn.close()

    def files() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in legacy.parent.iterdir()}

    before = files()
    ids, _ = sessions_in_a_repo(home, tmp_path, count=1)
    counts, found = scan(home)
    assert counts["new"] == 1
    assert named(found, "store.takeover") == []
    assert files() == before
    assert [r["id"] for r in query(db_path(home), "SELECT id FROM traces")] == ids


# ----------------------------------------------------------- adopted by the CLI


def test_rows_the_cli_pruned_or_reinserted_are_restored_and_its_own_rows_stay_its(
    home: Path, tmp_path: Path
) -> None:
    """A file the CLI adopted: tracesd's rows are copied out, with their outbox and file
    records; one the CLI pruned and one it re-inserted without git context are read again
    from their session files; a row only the CLI has stays in the CLI's file alone, which
    keeps every row, its version, and loses only tracesd's tables, indexes and triggers."""
    (pruned, reinserted, kept), head = sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    ours = snapshot(legacy)
    adopt_by_hand(legacy)
    with sqlite3.connect(legacy) as conn:
        conn.execute("DELETE FROM traces WHERE id = ?", (pruned,))
        conn.execute(
            "UPDATE traces SET git_branch = NULL, git_ref = NULL, updated_at = NULL WHERE id = ?",
            (reinserted,),
        )
        conn.execute(
            "INSERT INTO traces (id, agent_id, title, created_at) VALUES"
            " ('cli-only', 'claude-code', 'a subagent', 1)"
        )
    conn.close()
    cli_rows = query(legacy, "SELECT * FROM traces ORDER BY id")
    cli_schema = query(
        legacy,
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%tracesd%'"
        " AND name NOT IN ('traces_git_remote_url', 'traces_timestamp') ORDER BY name",
    )

    counts, found = scan(home)

    [event] = named(found, "store.takeover")
    assert (event["mode"], event["rows"], event["forgotten"]) == ("copied", 1, 2)
    assert (counts["new"], counts["unchanged"]) == (2, 1)  # two files read again
    mine = snapshot(db_path(home))
    assert [t["id"] for t in mine["traces"]] == [t["id"] for t in ours["traces"]]
    assert {(t["git_branch"], t["git_ref"]) for t in mine["traces"]} == {("feat/x", head)}
    [kept_row] = [t for t in mine["traces"] if t["id"] == kept]
    assert kept_row == next(t for t in ours["traces"] if t["id"] == kept)
    assert mine["tracesd_sync_state"] == ours["tracesd_sync_state"]
    assert user_version(db_path(home)) == migrations.SCHEMA_VERSION
    # The CLI's file: its rows and schema as they were, nothing of ours; only the git
    # columns the CLI left NULL in a row we captured are filled (the bridge, INTERFACE 5b).
    filled = {reinserted: {"git_branch": "feat/x", "git_ref": head}}
    expected = [{**row, **filled.get(row["id"], {})} for row in cli_rows]
    assert query(legacy, "SELECT * FROM traces ORDER BY id") == expected
    assert (
        query(
            legacy,
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%tracesd%'"
            " AND name NOT IN ('traces_git_remote_url', 'traces_timestamp') ORDER BY name",
        )
        == cli_schema
    )
    assert tracesd_objects(legacy) == []
    assert user_version(legacy) == 16
    assert named(scan(home)[1], "store.takeover") == []


def traces_cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_traces_cli()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "dumb"}
    return subprocess.run(
        [str(binary), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_file_the_real_traces_cli_adopted_is_taken_over_and_left_to_the_cli(
    home: Path, tmp_path: Path
) -> None:
    """The issue's case: tracesd's file at ~/.traces, then one `traces list` (migrates it
    to 16, prunes two of tracesd's traces, adds a subagent row). After `tracesd scan`: every
    trace tracesd had is in its own database again, with its git context; the CLI's file
    keeps its rows and version, holds nothing of ours, and the CLI is happy with it."""
    require_traces_cli()
    fixture_home(home)
    sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    ours = snapshot(legacy)
    listed = traces_cli(home, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert user_version(legacy) == 16
    cli_rows = query(legacy, "SELECT * FROM traces ORDER BY id")
    assert {t["id"] for t in ours["traces"]} - {r["id"] for r in cli_rows}  # it pruned some
    events_before = query(legacy, "SELECT COUNT(*) AS n FROM events")

    [event] = named(scan(home)[1], "store.takeover")
    assert event["mode"] == "copied"
    assert event["forgotten"] >= 1
    mine = snapshot(db_path(home))
    assert [t["id"] for t in mine["traces"]] == [t["id"] for t in ours["traces"]]
    git = ("id", "git_branch", "git_ref")  # the CLI rewrites git_remote_url in its own form
    assert [{k: t[k] for k in git} for t in mine["traces"]] == [
        {k: t[k] for k in git} for t in ours["traces"]
    ]
    assert query(legacy, "SELECT * FROM traces ORDER BY id") == cli_rows
    assert query(legacy, "SELECT COUNT(*) AS n FROM events") == events_before
    assert tracesd_objects(legacy) == []
    assert user_version(legacy) == 16
    again = traces_cli(home, tmp_path, "list", "--json")
    assert again.returncode == 0, again.stderr
    doctor = json.loads(traces_cli(home, tmp_path, "doctor", "--json").stdout)
    [check] = [c for c in doctor["checks"] if c["name"] == "Local database"]
    assert check["status"] == "pass", check
    assert named(scan(home)[1], "store.takeover") == []


# ------------------------------------------------------------ crashes and locks


def crash_after_link_moved(home: Path, legacy: Path) -> None:
    """Linked into place, the earlier file not yet removed."""
    db_path(home).parent.mkdir(parents=True)
    with sqlite3.connect(legacy) as src, sqlite3.connect(db_path(home)) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def crash_before_link(home: Path, legacy: Path) -> None:
    """A half-written temporary file beside where ours goes."""
    temp = db_path(home).with_name("traces.db" + takeover.TEMP_SUFFIX)
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))


def crash_after_link_copied(home: Path, legacy: Path) -> None:
    """A CLI-adopted file copied out and linked into place, its cleanup not yet done: the
    same takeover run on a copy of it, whose cleanup is then thrown away."""
    adopt_by_hand(legacy)
    spare = home.parent / "spare.db"
    shutil.copy(legacy, spare)
    assert takeover.take_over(spare, db_path(home)) is not None


@pytest.mark.parametrize(
    "crash", [crash_before_link, crash_after_link_moved, crash_after_link_copied]
)
def test_a_takeover_stopped_at_any_step_is_finished_by_the_next_start(
    home: Path, tmp_path: Path, crash: Any
) -> None:
    sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    before = snapshot(legacy)
    crash(home, legacy)

    [event] = named(list_(home), "store.takeover")
    assert event["mode"] == ("moved" if crash is crash_before_link else "finished")
    assert snapshot(db_path(home)) == before
    assert scan(home)[0]["unchanged"] == 3
    assert not db_path(home).with_name("traces.db" + takeover.TEMP_SUFFIX).exists()
    if crash is crash_after_link_copied:
        assert tracesd_objects(legacy) == []
        assert user_version(legacy) == 16
        assert len(query(legacy, "SELECT id FROM traces")) == 3
    else:
        assert not (home / ".traces").exists()


KILLER = """
import sys
from pathlib import Path
from tracesd.store import takeover
takeover.take_over(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_kill_9_at_any_moment_of_a_takeover_loses_nothing(home: Path, tmp_path: Path) -> None:
    """A real takeover process, killed with SIGKILL after a growing delay, again and again;
    whatever it left, the next takeover ends with every row and nothing at the old path."""
    (home / ".claude" / "projects").mkdir(parents=True)
    legacy = build_legacy(home)
    with sqlite3.connect(legacy) as conn:
        conn.executemany(
            "INSERT INTO traces (id, agent_id, title, timestamp, created_at, updated_at)"
            " VALUES (?, 'codex', ?, 1, 1, 1)",
            ((f"t{i:05}", "x" * 200) for i in range(20000)),
        )
        conn.executemany(
            "INSERT INTO tracesd_files (path, agent_id, size, mtime_ns, trace_ids, seen_at)"
            " VALUES (?, 'codex', 1, 1, ?, 1)",
            ((f"/f/{i}", json.dumps([f"t{i:05}"])) for i in range(20000)),
        )
    conn.close()
    before = snapshot(legacy)
    adopt_by_hand(legacy)  # the slower path: rebuilt row by row
    db = db_path(home)
    env = isolated_env(home, PYTHONPATH=str(Path(__file__).parents[1]))
    seen = set()
    for attempt in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLER, str(legacy), str(db)], env=env, cwd=tmp_path
        )
        time.sleep(0.05 + attempt * 0.04)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        temp = db.with_name(db.name + takeover.TEMP_SUFFIX)
        seen.add((temp.exists(), db.exists(), bool(tracesd_objects(legacy))))
        if not tracesd_objects(legacy):
            break
    print("states left by kill -9 (temp, ours, earlier still ours):", sorted(seen))
    takeover.take_over(legacy, db)
    mine = snapshot(db)
    # rebuilt at the schema of the earlier installs (4), which had no `model` column (6);
    # build_legacy writes it with today's code, where every row's model is NULL here
    assert {t.pop("model") for t in before["traces"]} == {None}
    assert mine["traces"] == before["traces"]
    assert mine["tracesd_files"] == before["tracesd_files"]
    kept = {t["id"] for t in mine["traces"]}
    assert mine["tracesd_outbox"] == [r for r in before["tracesd_outbox"] if r["trace_id"] in kept]
    assert tracesd_objects(legacy) == []
    assert user_version(legacy) == 16


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextlib.contextmanager
def holding_write_lock(db: Path) -> Iterator[None]:
    """Another process (the Traces CLI, say) holds `db`'s write lock for the block."""
    with subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as locker:
        assert locker.stdout is not None
        assert locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        yield
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.wait(30) == 0


def test_the_cli_holding_its_write_lock_leaves_the_cleanup_to_the_next_start(
    home: Path, tmp_path: Path
) -> None:
    ids, _ = sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    adopt_by_hand(legacy)
    with holding_write_lock(legacy):
        counts, found = scan(home)
        assert named(found, "store.takeover") == []
        [deferred] = named(found, "store.takeover_deferred")
        assert "Traces CLI" in deferred["reason"]
        assert counts["unchanged"] == 3  # our database is in place already
        assert "tracesd_files" in tracesd_objects(legacy)
        report = json.loads(tracesd(home, "doctor", "--json").stdout)
        [check] = [c for c in report["checks"] if c["name"] == "earlier database"]
        assert check["status"] == "warn"
        assert "Traces CLI has adopted it" in check["detail"]
    _, found = scan(home)
    [event] = named(found, "store.takeover")
    assert event["mode"] == "finished"
    assert tracesd_objects(legacy) == []
    report = json.loads(tracesd(home, "doctor", "--json").stdout)
    assert "earlier database" not in {c["name"] for c in report["checks"]}
    assert [r["id"] for r in query(db_path(home), "SELECT id FROM traces ORDER BY id")] == sorted(
        ids
    )


def test_a_daemon_finishes_a_takeover_the_cli_delayed_once_the_lock_is_free(
    home: Path, tmp_path: Path, daemons: Any
) -> None:
    sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    adopt_by_hand(legacy)
    with holding_write_lock(legacy):
        daemon = daemons(home)
        daemon.wait_ready()
        daemon.wait_for_event("store.takeover_deferred", timeout=30)
        assert daemon.events("store.takeover") == []
    event = daemon.wait_for_event("store.takeover", timeout=60)
    assert event["mode"] == "finished"
    assert tracesd_objects(legacy) == []


def test_two_tracesd_starting_at_once_take_over_once(home: Path, tmp_path: Path) -> None:
    sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    before = snapshot(legacy)
    command = [sys.executable, "-m", "tracesd", "list", "--json", "--log-level", "info"]
    command += ["--log-format", "json"]
    procs = [
        subprocess.Popen(command, env=isolated_env(home), stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len([e for out in outputs for e in events(out, "store.takeover")]) == 1
    assert snapshot(db_path(home)) == before
    assert list((home / ".traces").glob("*")) == []
    assert not (home / ".traces").exists()


# ------------------------------------------------------------- whose file it is


def test_a_cli_file_at_our_path_is_refused_without_advising_an_upgrade(home: Path) -> None:
    db = db_path(home)
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE traces (id TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE tracesd_files (path TEXT PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 16")
    conn.close()
    listed = tracesd(home, "list")
    assert listed.returncode == 1
    assert "is not tracesd's database" in listed.stderr
    assert "upgrade tracesd" not in listed.stderr
    report = json.loads(tracesd(home, "doctor", "--json").stdout)
    [check] = [c for c in report["checks"] if c["name"] == "database"]
    assert check["status"] == "fail"
    assert "not tracesd's database" in check["detail"]
    assert "upgrade" not in check["fix"]


def test_db_path_at_the_clis_legacy_file_is_a_config_error(home: Path) -> None:
    config = home / "c.toml"
    config.write_text('[storage]\ndb_path = "~/.traces/traces.db"\n')
    done = tracesd(home, "scan", "--config", str(config))
    assert done.returncode == 2
    assert "storage.db_path" in done.stderr
    assert "Traces CLI" in done.stderr
    assert not (home / ".traces").exists()


def test_rows_merged_into_a_database_already_in_place_get_the_canonical_url(
    home: Path, tmp_path: Path
) -> None:
    """The `finished` takeover merges rows past our migrations (ours exists already): an
    earlier file's raw remote (scp form with `.git`) arrives canonical all the same."""
    ids, _ = sessions_in_a_repo(home, tmp_path)
    legacy = build_legacy(home)
    with sqlite3.connect(legacy) as conn:
        conn.execute("UPDATE traces SET git_remote_url = 'git@GitHub.com:Org/X.git'")
    conn.close()
    db_path(home).parent.mkdir(parents=True)
    migrations.apply(db_path(home))  # ours in place, empty, at the current schema
    _, found = scan(home)
    [event] = named(found, "store.takeover")
    assert event["mode"] == "finished"
    rows = query(db_path(home), "SELECT id, git_remote_url FROM traces ORDER BY id")
    assert rows == [{"id": i, "git_remote_url": "https://github.com/Org/X"} for i in sorted(ids)]


def test_sidecars_left_beside_a_database_that_is_gone_are_removed_with_dot_traces(
    home: Path,
) -> None:
    """A second tracesd that looked at the earlier file while the first moved it away
    leaves a `-wal` and `-shm` of a database that no longer exists: the next start (or that
    tracesd itself) removes them, and then the emptied ~/.traces."""
    legacy = home / ".traces" / "traces.db"
    legacy.parent.mkdir()
    for end in ("-wal", "-shm"):
        legacy.with_name(legacy.name + end).write_bytes(b"")
    assert takeover.take_over(legacy, db_path(home)) is None
    assert not legacy.parent.exists()
