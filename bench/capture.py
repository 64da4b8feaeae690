"""capture: a Claude Code session file is written -> its row is committed with git context.

A real `tracesd run` watches an isolated HOME. Sessions are written one at a time, 20-50 ms
apart, in ten real repositories; before every fifth one the repository gets a new commit,
so the daemon's git cache must miss and run git again. Latency is the `timestamp` of the
daemon's `ingest.captured` event (logged right after the commit) minus the wall-clock time
the bench finished writing the file.

The Traces CLI bridge is on, with work to do: the CLI's database (its table, WAL, at
`$TRACES_EVENTSTORE`) gets a row with NULL git columns for each session just before the
session file is written (as if the CLI had listed it first), so every capture is followed
by a pass that fills the row, and every insert by an event on the CLI's file. Checked at the
end: every one of those rows got the git context.

Floor, same run, same number of samples and pacing: a capture on a git cache miss done
plainly -- three sequential git subprocesses and one SQLite insert committed to a WAL
database (journal and synchronous settings as tracesd's).
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import clidb, harness
from bench.corpus import claude_project, claude_session
from bench.harness import Daemon, Options, Repo, Workspace
from bench.report import Result, Row, at_most, distribution, fmt

SESSIONS = 200
REPOS = 10
COMMIT_EVERY = 5
SPACING_S = (0.020, 0.050)
P99_TARGET_MS = 30.0
FLOOR_FACTOR = 2.0
_PROMPTS = (
    "Add a --dry-run flag to the sync command",
    "Why does the retry helper give up after one attempt?",
    "Write a test for the config loader's error messages",
    "Rename the Store class to Database everywhere",
)


@dataclass(frozen=True, slots=True)
class Step:
    """One planned session: where, whether to commit first, how long to pause before it."""

    repo: Repo
    commit_first: bool
    pause_s: float


@dataclass(frozen=True, slots=True)
class Sample:
    session_id: str
    repo: Repo
    #: the commit HEAD pointed at when the session was written
    ref: str
    #: git had to run: a new commit, or the repository's first session
    miss: bool
    #: wall clock (time.time()) when the file was closed
    written_at: float


def run(options: Options) -> Result:
    result = Result("capture")
    with Workspace("capture") as ws:
        harness.say("capture: creating repositories")
        repos = harness.make_repos(ws.root / "repos", REPOS, ws.git_env)
        for repo in repos:
            claude_project(ws.home, repo.path).mkdir(parents=True)
        rng = random.Random(options.seed)
        plan = [
            Step(rng.choice(repos), i % COMMIT_EVERY == COMMIT_EVERY - 1, rng.uniform(*SPACING_S))
            for i in range(SESSIONS)
        ]
        harness.say(f"capture: floor ({SESSIONS} x 3 git + 1 SQLite commit)")
        floor_ms = _floor(ws, plan)
        root = str(ws.home / ".claude" / "projects")
        cli = clidb.create(ws.root / "cli" / "traces.db")
        env = {**ws.env, "TRACES_EVENTSTORE": str(cli)}
        with Daemon(env, ws.root / "daemon.log") as daemon:
            daemon.wait_for("watcher.watching", lambda e: e.get("root") == root)
            daemon.wait_for("scan.finished", lambda e: e.get("reason") == "startup")
            harness.say(f"capture: writing {SESSIONS} sessions")
            samples = _write_sessions(ws, plan, rng, cli)
            latencies_ms = [_latency_ms(daemon, s) for s in samples]
            filled = _cli_filled(cli, len(samples))
            problems = harness.wrong_rows(
                ws.db,
                {
                    s.session_id: (str(s.repo.path), s.repo.remote, s.repo.branch, s.ref)
                    for s in samples
                },
            )
        ws.keep = bool(problems) or filled != len(samples)
        _report(result, samples, latencies_ms, floor_ms, problems)
        result.rows.append(
            Row(
                "Traces CLI rows given git context (bridge on)",
                f"{filled}/{len(samples)}",
                f"{len(samples)}/{len(samples)}",
                passed=filled == len(samples),
            )
        )
    return result


def _write_sessions(ws: Workspace, plan: list[Step], rng: random.Random, cli: Path) -> list[Sample]:
    samples: list[Sample] = []
    seen: set[Path] = set()
    for step in plan:
        time.sleep(step.pause_s)  # pacing only; nothing is measured across it
        repo = step.repo
        if step.commit_first:
            harness.commit(repo, ws.git_env)
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        _cli_insert(cli, session_id)
        data = claude_session(session_id, repo.path, repo.branch, rng.choice(_PROMPTS), rng)
        path = claude_project(ws.home, repo.path) / f"{session_id}.jsonl"
        with open(path, "wb") as f:
            f.write(data)
        written_at = time.time()
        miss = step.commit_first or repo.path not in seen
        seen.add(repo.path)
        samples.append(Sample(session_id, repo, repo.head, miss, written_at))
    return samples


def _cli_insert(path: Path, session_id: str) -> None:
    """The CLI lists the session first: its row, without git context."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=15)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")  # as the CLI runs
        clidb.insert(conn, [session_id])
    finally:
        conn.close()


def _cli_filled(path: Path, expected: int, timeout_s: float = 30.0) -> int:
    """How many of the CLI's rows have branch and commit (waiting for the last passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        filled = clidb.filled(path)
        if filled >= expected or time.monotonic() >= deadline:
            return filled
        time.sleep(0.1)


def _latency_ms(daemon: Daemon, sample: Sample) -> float:
    event = daemon.wait_for(
        "ingest.captured", lambda e: e.get("trace_id") == sample.session_id, timeout_s=30.0
    )
    committed_at = datetime.fromisoformat(event["timestamp"]).timestamp()
    return (committed_at - sample.written_at) * 1000


def _floor(ws: Workspace, plan: list[Step]) -> list[float]:
    """Per step: the three git queries the daemon runs, then one committed insert (ms)."""
    conn = sqlite3.connect(ws.root / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE traces (id TEXT PRIMARY KEY, directory TEXT,"
        " git_remote_url TEXT, git_branch TEXT, git_ref TEXT, created_at INTEGER)"
    )
    samples: list[float] = []
    try:
        for i, step in enumerate(plan):
            time.sleep(step.pause_s)  # same pacing as the daemon run
            started = time.perf_counter()
            answers = harness.git_queries(step.repo.path, ws.env)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?)",
                (f"floor-{i}", str(step.repo.path), *answers, int(time.time() * 1000)),
            )
            conn.execute("COMMIT")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    return samples


def _report(
    result: Result,
    samples: list[Sample],
    latencies_ms: list[float],
    floor_ms: list[float],
    problems: list[str],
) -> None:
    every = distribution(latencies_ms)
    misses = distribution([ms for ms, s in zip(latencies_ms, samples, strict=True) if s.miss])
    floor = distribution(floor_ms)
    floor_text = f"p99 {fmt(floor['p99'], 'ms')}"
    for label, dist in (
        ("latency, all", every),
        ("latency, git cache miss", misses),
        ("floor (3 git + 1 commit)", floor),
    ):
        summary = ", ".join(f"{k} {dist[k]:.1f}" for k in ("p50", "p90", "p99", "max"))
        result.rows.append(Row(f"{label} (n={dist['n']:.0f}), ms", summary))
    result.rows += [
        at_most("latency p99", every["p99"], P99_TARGET_MS, "ms", floor=floor_text),
        at_most(
            "latency p99 vs floor",
            every["p99"] / floor["p99"],
            FLOOR_FACTOR,
            "x floor",
            floor=floor_text,
            digits=2,
        ),
        Row(
            "rows with the right git context",
            f"{len(samples) - len(problems)}/{len(samples)}",
            f"{len(samples)}/{len(samples)}",
            passed=not problems,
        ),
    ]
    result.raw.update(
        latency_ms=every,
        latency_miss_ms=misses,
        floor_ms=floor,
        problems=problems[:20],
        samples=[
            {"id": s.session_id, "repo": s.repo.path.name, "miss": s.miss, "latency_ms": ms}
            for s, ms in zip(samples, latencies_ms, strict=True)
        ],
        floor_samples_ms=floor_ms,
    )
