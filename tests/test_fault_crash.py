"""kill -9 at random moments: during the startup scan, and while traces are being shipped.

Reliability targets T1 (crash-consistent backfill) and T2 (effectively-once delivery) of
reliability-research.md, against real `tracesd run` processes receiving real SIGKILLs,
real git repositories, real SQLite files and a real aiohttp server on 127.0.0.1.

The kill points come from a seeded random generator. The seed is printed (run with `-s`)
and named in every assertion message; TRACESD_CRASH_SEED=<seed> replays a run.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.faultserver import Plan, Received, ThreadedFaultServer
from tests.helpers import Daemon, db_path, git, isolated_env, make_repo, tracesd
from tracesd.models import TRACE_COLUMNS, Trace
from tracesd.sync.wire import payload

StartDaemon = Callable[..., Daemon]

#: T1: the backfill that is killed five times in a row
SCAN_SESSIONS = 10_000
SCAN_PROJECT_DIRS = 500
SCAN_KILLS = 5
#: T2: the traces shipped while the daemon is killed 10 to 20 times
SYNC_SESSIONS = 5_000
SYNC_PROJECT_DIRS = 250
SYNC_BATCH = 25
#: sessions that go on (one more message) at each kill, while batches are on the wire
UPDATES_PER_KILL = 10
#: how long the test server takes to answer a batch it has stored (time-scaled shipping)
SYNC_ANSWER_DELAY_S = 0.03
REPOS = 5
#: a row's fields a clean run must reproduce exactly (updated_at is the time of the write)
COMPARED = (
    "id",
    "agent_id",
    "title",
    "preview",
    "timestamp",
    "directory",
    "source_path",
    "shared_url",
    "shared_visibility",
    "git_remote_url",
    "git_branch",
    "git_ref",
    "created_at",
    "model",
)


def seed_of(test: str) -> int:
    given = os.environ.get("TRACESD_CRASH_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"\n{test}: seed {seed} (TRACESD_CRASH_SEED={seed} replays it)")
    return seed


# ------------------------------------------------------------------------------ corpus


@dataclass(frozen=True, slots=True)
class Corpus:
    #: trace id -> its session file
    paths: dict[str, Path]

    @property
    def ids(self) -> set[str]:
        return set(self.paths)

    @property
    def by_path(self) -> dict[str, str]:
        return {str(path): trace_id for trace_id, path in self.paths.items()}


def make_corpus(home: Path, work: Path, *, sessions: int, dirs: int, seed: int) -> Corpus:
    """`sessions` Claude Code transcripts (~2 KB each) in `dirs` project directories.

    The working directories are subdirectories of a handful of real repositories (one on a
    detached HEAD, one without a remote), and every tenth is no repository at all. The
    same seed writes the same files."""
    rng = random.Random(seed)
    repos = [
        make_repo(work / "repos" / f"r{i}", remote=f"https://github.com/acme/r{i}.git")
        for i in range(REPOS - 1)
    ]
    repos.append(make_repo(work / "repos" / "local", remote=None, branch="trunk"))
    git(repos[1], "checkout", "-q", "--detach")
    projects = home / ".claude" / "projects"
    paths: dict[str, Path] = {}
    per_dir = sessions // dirs
    for d in range(dirs):
        if d % 10 == 9:
            cwd = work / "scratch" / f"notes-{d:03d}"
        else:
            cwd = repos[d % REPOS] / f"pkg{d:03d}"
        cwd.mkdir(parents=True, exist_ok=True)
        project = projects / re.sub(r"[^a-zA-Z0-9]", "-", str(cwd))
        project.mkdir(parents=True)
        count = per_dir + (1 if d < sessions - per_dir * dirs else 0)
        for _ in range(count):
            trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            path = project / f"{trace_id}.jsonl"
            path.write_text(_transcript(trace_id, str(cwd), rng))
            paths[trace_id] = path
    return Corpus(paths)


def _transcript(trace_id: str, cwd: str, rng: random.Random) -> str:
    start = 1_780_000_000 + rng.randrange(10_000_000)
    common = {"cwd": cwd, "sessionId": trace_id, "isSidechain": False, "version": "2.1.240"}
    words = ("retry", "flaky", "parser", "cache", "index", "sync", "config", "test", "docs")
    prompt = f"Fix the {rng.choice(words)} bug in module {rng.randrange(1000)}"
    records: list[dict[str, Any]] = [
        {**common, "type": "user", "message": {"role": "user", "content": prompt}},
    ]
    for turn in range(rng.randint(2, 4)):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))
        content = [{"type": "text", "text": f"Step {turn}: {text}"}]
        records.append(
            {**common, "type": "assistant", "message": {"role": "assistant", "content": content}}
        )
    for i, record in enumerate(records):
        seconds = start + 7 * i
        record["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))
    return "".join(json.dumps(r) + "\n" for r in records)


# ----------------------------------------------------------------------------- checks


def connect_ro(db: Path) -> sqlite3.Connection:
    """A read-only connection: it never checkpoints, so a killed daemon's WAL is left for
    the next start to recover."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def traces_of(db: Path) -> dict[str, dict[str, Any]]:
    conn = connect_ro(db)
    try:
        rows = conn.execute(f"SELECT {', '.join(COMPARED)} FROM traces").fetchall()
    finally:
        conn.close()
    return {row["id"]: dict(row) for row in rows}


def check_consistent(db: Path, corpus: Corpus, reference: dict[str, dict[str, Any]]) -> int:
    """What must hold after any kill: the database is intact, each stored trace is a corpus
    trace stored exactly as a clean run stores it, every file recorded as read has its
    trace stored (and the other way round), and every trace has its one outbox row.
    Returns the number of traces stored."""
    conn = connect_ro(db)
    try:
        assert integrity(conn) == ["ok"]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute(f"SELECT {', '.join(COMPARED)} FROM traces").fetchall()
        files = conn.execute(
            "SELECT path, size, mtime_ns, trace_ids, error FROM tracesd_files"
        ).fetchall()
        outbox = conn.execute("SELECT trace_id, version FROM tracesd_outbox").fetchall()
    finally:
        conn.close()
    stored = {row["id"]: dict(row) for row in rows}
    assert len(stored) == len(rows)
    extra = set(stored) - corpus.ids
    assert not extra, f"{len(extra)} traces that are not in the corpus, e.g. {min(extra)}"
    wrong = [i for i, row in stored.items() if row != reference[i]]
    assert not wrong, f"{len(wrong)} rows differ from a clean run's, e.g. {stored[wrong[0]]}"

    by_path = corpus.by_path
    recorded: set[str] = set()
    for f in files:
        trace_ids = json.loads(f["trace_ids"] or "[]")
        assert f["error"] is None, dict(f)
        assert trace_ids == [by_path[f["path"]]], dict(f)
        st = os.stat(f["path"])
        assert (f["size"], f["mtime_ns"]) == (st.st_size, st.st_mtime_ns), dict(f)
        recorded.update(trace_ids)
    missing = recorded - set(stored)
    assert not missing, f"{len(missing)} files recorded as read whose trace is missing"
    unrecorded = set(stored) - recorded
    assert not unrecorded, f"{len(unrecorded)} traces stored without the read of their file"
    assert sorted((r["trace_id"], r["version"]) for r in outbox) == sorted(
        (i, 1) for i in stored
    ), "every stored trace has exactly one outbox row, at version 1"
    return len(stored)


def integrity(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def count_traces(conn: sqlite3.Connection) -> int:
    try:
        return int(conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or the writer is mid-checkpoint
        return -1


def at_least(count: Callable[[], int], target: int) -> bool:
    return count() >= target


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {what}"
        time.sleep(0.005)


def kill_9(daemon: Daemon) -> None:
    assert daemon.proc.poll() is None, f"daemon exited:\n{daemon.log_path.read_text()}"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    assert daemon.proc.returncode == -signal.SIGKILL


def free_disk(home: Path, tmp_path: Path, *more: Path) -> None:
    """A passed test's corpus and databases go at once (tens of MB on a shared disk);
    a failed test keeps them for a look."""
    for path in (home / ".claude", db_path(home).parent, tmp_path / "work", *more):
        shutil.rmtree(path, ignore_errors=True)


def write_config(home: Path, name: str, text: str) -> Path:
    path = home / ".config" / "tracesd" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- T1: scan


@pytest.mark.timeout(240)
def test_kill_9_five_times_during_a_10000_file_scan_stores_every_trace_exactly_once(
    daemons: StartDaemon, home: Path, tmp_path: Path
) -> None:
    """T1. 10,000 Claude Code sessions in 500 project directories (cwds in 5 real git
    repositories, and outside any); `tracesd run` is SIGKILLed five times in a row at a
    random moment of its startup scan (after some but not all traces were committed, plus
    a random delay), then started once more and left to finish.

    Pass bar: after every kill PRAGMA integrity_check = ok, every stored row is a corpus
    trace equal in every field to what one uninterrupted run stores, every file recorded as
    read has its trace (and every trace its file record and one outbox row); after the
    final run exactly 10,000 rows, one per trace id, all equal to the clean run's, and the
    final run read only the files no earlier run had recorded, at >= 1,000 files/s."""
    seed = seed_of("T1 scan crash")
    rng = random.Random(seed)
    corpus = make_corpus(
        home, tmp_path / "work", sessions=SCAN_SESSIONS, dirs=SCAN_PROJECT_DIRS, seed=seed
    )
    assert len(corpus.paths) == SCAN_SESSIONS

    # The reference: one uninterrupted run over the same files, into a database of its own.
    ref_db = tmp_path / "reference" / "traces.db"
    ref_config = write_config(home, "reference.toml", f'[storage]\ndb_path = "{ref_db}"\n')
    done = tracesd(home, "--config", str(ref_config), "scan", "--json")
    assert done.returncode == 0, done.stderr
    ref_report = json.loads(done.stdout)
    assert ref_report["new"] == SCAN_SESSIONS, ref_report
    reference = traces_of(ref_db)
    assert set(reference) == corpus.ids

    db = db_path(home)
    stored = 0
    kills: list[tuple[int, int]] = []
    # Each kill comes once at least one more trace was committed and a random number of
    # them in all (uniform over the first 70 %: thousands are left for the final run).
    targets = sorted(rng.randint(1, SCAN_SESSIONS * 7 // 10) for _ in range(SCAN_KILLS))
    for kill, drawn in enumerate(targets, 1):
        context = f"seed {seed}, kill {kill}"
        daemon = daemons(home)
        target = max(drawn, stored + 1)
        delay = rng.uniform(0.0, 0.05)
        wait_for(lambda: db.exists(), 30, f"{context}: database created")
        conn = connect_ro(db)
        try:
            reached = partial(at_least, partial(count_traces, conn), target)
            wait_for(reached, 60, f"{context}: {target} traces")
        finally:
            conn.close()
        time.sleep(delay)
        kill_9(daemon)
        try:
            after = check_consistent(db, corpus, reference)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc
        assert stored < after < SCAN_SESSIONS, f"{context}: the kill was not mid-scan ({after})"
        kills.append((target, after))
        stored = after

    daemon = daemons(home)
    finished = daemon.wait_for_event(
        "scan.finished", timeout=120, where=lambda e: e.get("reason") == "startup"
    )
    started = daemon.events("scan.started")[0]
    final = check_consistent(db, corpus, reference)
    status = tracesd(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert daemon.stop() == 0

    context = f"seed {seed}, kills (target, stored) {kills}"
    assert final == SCAN_SESSIONS, context
    assert traces_of(db) == reference, context
    # Resumed, not restarted: only the files no run had recorded were read again.
    assert started["changed"] == SCAN_SESSIONS - stored, (context, started)
    assert finished["new"] == SCAN_SESSIONS - stored, (context, finished)
    assert finished["indexed"] == SCAN_SESSIONS, finished
    assert finished["errors"] == 0, finished
    assert snapshot["traces"]["total"] == SCAN_SESSIONS, snapshot["traces"]
    assert snapshot["scan"]["running"] is False

    free_disk(home, tmp_path, ref_db.parent)
    rate = finished["new"] / finished["duration_s"]
    ref_rate = SCAN_SESSIONS / ref_report["duration_s"]
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    assert rate >= 1_000, f"backfill {rate:,.0f} files/s < 1,000 (T1; load average {load})"
    print(
        f"T1: kills at (target, stored) {kills}; final run read {finished['new']} files in"
        f" {finished['duration_s']:.2f} s ({rate:,.0f} files/s); uninterrupted `tracesd scan`"
        f" {ref_report['duration_s']:.2f} s ({ref_rate:,.0f} files/s)"
    )


# --------------------------------------------------------------------------- T2: sync


def expected_item(row: dict[str, Any]) -> dict[str, Any]:
    """What the server must hold for a local trace: the latest payload the client builds
    for its row (the real CLI's field set; delivery.payload, checked in test_sync.py)."""
    item = payload(Trace(**{c: row[c] for c in TRACE_COLUMNS if c in row}), send_titles=True)
    return {k: v for k, v in item.items() if k != "externalId"}


@pytest.mark.timeout(240)
def test_kill_9_while_shipping_5000_traces_leaves_nothing_missing_and_only_idempotent_resends(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """T2. 5,000 captured traces are shipped in batches of 25 to an HTTP server on
    127.0.0.1 that answers each stored batch 30 ms later; `tracesd run` is SIGKILLed at 10
    to 20 random moments while shipping (after the server stored some new traces, plus a
    random delay) and restarted each time.

    Pass bar: in the end the server holds all 5,000 traces (0 missing, none it should not),
    each equal in every field to the local trace, every local trace acknowledged at its
    latest version (version = sent_version, nothing failed); every item the server received
    more than once was an idempotent re-send of what it already held, and there are at
    most 2 batches of re-sends per kill (the batch being answered and the next one on the
    wire); at least one kill lands after the server stored a batch and before the daemon
    recorded it, and every trace caught there is sent again after the restart; the local
    database passes integrity_check after every kill."""
    seed = seed_of("T2 sync crash")
    rng = random.Random(seed)
    corpus = make_corpus(
        home, tmp_path / "work", sessions=SYNC_SESSIONS, dirs=SYNC_PROJECT_DIRS, seed=seed
    )
    captured = tracesd(home, "scan", "--json")  # sync is off: everything is pending
    assert captured.returncode == 0, captured.stderr
    assert json.loads(captured.stdout)["new"] == SYNC_SESSIONS

    def slow(plan: Plan) -> None:
        plan.delay_s = SYNC_ANSWER_DELAY_S

    fault.call(slow, fault.server.plan)
    config = (
        f'[sync]\napi_url = "{fault.url}"\nscope = "all"\ninterval_s = 0.2\nmax_backoff_s = 0.5\n'
        f"batch_size = {SYNC_BATCH}\n"
    )
    write_config(home, "config.toml", config)
    env = isolated_env(home, TRACES_API_KEY="sk-crash-test")
    db = db_path(home)

    def on_server() -> int:
        return int(fault.call(lambda: len(fault.server.stored)))

    kills = rng.randint(10, 20)
    ids = sorted(corpus.ids)
    touched: dict[str, str] = {}
    #: per kill: how many items the server had received, and the traces it had stored in
    #: their current version while the daemon had not recorded them as sent
    in_window: list[tuple[int, set[str]]] = []
    points: list[tuple[int, int]] = []
    for kill in range(1, kills + 1):
        context = f"seed {seed}, kill {kill} of {kills}"
        before = on_server()
        target = before + rng.randint(1, 150)
        daemon = daemons(home, env=env)
        reached = partial(at_least, on_server, target)
        wait_for(reached, 60, f"{context}: {target} traces on the server")
        # Sessions go on while batches are on the wire: new versions race the sends.
        for trace_id in rng.sample(ids, UPDATES_PER_KILL):
            touched[trace_id] = append_reply(corpus.paths[trace_id], f"Update {kill} {trace_id}")
        time.sleep(rng.uniform(0.0, 0.05))
        kill_9(daemon)
        server, mark = fault.call(lambda: (dict(fault.server.stored), len(fault.server.received)))
        after = len(server)
        assert before < after < SYNC_SESSIONS, f"{context}: not mid-shipping ({after})"
        conn = connect_ro(db)
        try:
            assert integrity(conn) == ["ok"], context
            unacked = {
                row[0]
                for row in conn.execute(
                    "SELECT trace_id FROM tracesd_outbox WHERE version > sent_version"
                )
            }
        finally:
            conn.close()
        # The worst window: the server stored a version the daemon never recorded as sent.
        local = traces_of(db)
        window = {i for i in unacked & set(server) if server[i] == expected_item(local[i])}
        in_window.append((mark, window))
        points.append((target, after))

    def fast(plan: Plan) -> None:
        plan.delay_s = 0.0

    fault.call(fast, fault.server.plan)  # no more kills: the rest may go at full speed
    daemon = daemons(home, env=env)
    wait_for(lambda: pending(db) == 0, 120, f"seed {seed}: every trace acknowledged")
    assert daemon.stop() == 0

    context = f"seed {seed}, kills (target, on server) {points}"
    local = traces_of(db)
    stored: dict[str, dict[str, Any]] = fault.call(lambda: dict(fault.server.stored))
    received: list[Received] = fault.call(lambda: list(fault.server.received))
    assert set(local) == corpus.ids, context
    missing = set(local) - set(stored)
    assert not missing, f"{context}: {len(missing)} traces missing on the server"
    assert set(stored) == set(local), context
    differ = [i for i in local if stored[i] != expected_item(local[i])]
    assert not differ, f"{context}: {len(differ)} differ, e.g. {stored[differ[0]]}"
    stale = [i for i, text in touched.items() if local[i]["preview"] != text]
    assert not stale, f"{context}: {len(stale)} updates not captured, e.g. {stale[0]}"

    conn = connect_ro(db)
    try:
        versions = dict(conn.execute("SELECT trace_id, version FROM tracesd_outbox"))
        outbox = conn.execute(
            "SELECT COUNT(*), SUM(version = sent_version), COUNT(failed_version)"
            " FROM tracesd_outbox"
        ).fetchone()
    finally:
        conn.close()
    assert tuple(outbox) == (SYNC_SESSIONS, SYNC_SESSIONS, 0), context
    assert all(versions[i] >= (2 if i in touched else 1) for i in local), context

    # Per trace, what the server received is a run of states that only moves forward: the
    # first send, repeats of a state it had (idempotent re-sends), and newer versions.
    repeats = [r for r in received if r.repeat]
    assert len(received) - len(repeats) == SYNC_SESSIONS, context
    resends = [r for r in repeats if r.idempotent]
    updates = [r for r in repeats if not r.idempotent]
    wrong = [r for r in updates if r.external_id not in touched]
    assert not wrong, f"{context}: a re-send changed a trace that never changed: {wrong[0]}"
    states: dict[str, list[dict[str, Any]]] = {}
    for r in received:
        history = states.setdefault(r.external_id, [])
        state = {**r.before, **r.fields}
        if not history or history[-1] != state:
            assert state not in history, f"{context}: {r.external_id} went back to {state}"
            history.append(state)
    assert all(len(states[i]) <= versions[i] for i in local), context
    bound = kills * 2 * SYNC_BATCH
    assert len(resends) <= bound, f"{context}: {len(resends)} re-sends > {bound}"
    # Kills did land between "the server stored it" and "the daemon recorded it", and
    # each trace caught there was sent again after the restart (at least once).
    hits = [window for _, window in in_window if window]
    assert hits, f"{context}: no kill landed after a post and before its commit"
    for mark, window in in_window:
        again = {r.external_id for r in received[mark:]}
        assert window <= again, f"{context}: {len(window - again)} never re-sent"
    free_disk(home, tmp_path)
    requests = len(fault.call(lambda: list(fault.server.seen)))
    print(
        f"T2: {kills} kills at (target, on server) {points}; server received"
        f" {len(received)} items in {requests} requests for {SYNC_SESSIONS} traces"
        f" ({len(touched)} updated meanwhile): {len(updates)} updates,"
        f" {len(resends)} idempotent re-sends, 0 duplicate rows, 0 missing;"
        f" {len(hits)} kills landed after a post and before its commit"
        f" ({sum(len(w) for w in hits)} traces, all re-sent)"
    )


def append_reply(path: Path, text: str) -> str:
    """The session goes on: one more assistant message, the trace's new preview. Its model
    is the first the session names, so a synced field changes too (the preview alone is no
    longer sent): the trace is pending again."""
    first = json.loads(path.read_text().splitlines()[0])
    message = {
        "role": "assistant",
        "model": "claude-test-1",
        "content": [{"type": "text", "text": text}],
    }
    record = {
        "cwd": first["cwd"],
        "sessionId": first["sessionId"],
        "isSidechain": False,
        "type": "assistant",
        "message": message,
        "uuid": str(uuid.uuid4()),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return text


def pending(db: Path) -> int:
    conn = connect_ro(db)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM tracesd_outbox WHERE version > sent_version"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])
