"""scan: `tracesd scan --json` over 10,000 realistic sessions in 100 real git repositories.

The corpus (60% Claude Code, 25% Codex, 15% Gemini CLI; log-normal sizes, some 100 KB+
lines) is generated fresh, flushed to disk, then scanned twice as a subprocess: the first
scan indexes everything, the second finds the tree unchanged. Wall time covers the whole
process (interpreter start included); CPU comes from wait4, peak RSS from
the child's VmHWM in /proc. The second-scan speed-up compares the scans' own durations
(`duration_s`), since both processes pay the same interpreter start.

Floors, same run: reading every session file once in full (cat in Python) plus the three
git queries in each of the 100 repositories; and `tracesd --version` for interpreter
start, imports and their memory.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import harness, measure
from bench.corpus import Corpus, Spec, build
from bench.harness import TRACESD, Options, Repo, Workspace
from bench.measure import Child
from bench.report import Result, Row, at_least, at_most, fmt

SESSIONS = 10_000
REPOS = 100
RATE_TARGET = 2_000.0
RSS_TARGET_MB = 150.0
SPEEDUP_TARGET = 10.0


def run(options: Options) -> Result:
    result = Result("scan")
    with Workspace("scan") as ws:
        repos, corpus = build(ws, "scan", REPOS, Spec(SESSIONS, options.seed))
        harness.say("scan: floors")
        read_s = _read_all([s.path for s in corpus.sessions])
        git_s = _git_queries(repos, ws.env)
        startup = _tracesd(ws, "version", "--version")
        harness.say("scan: first scan")
        first = _tracesd(ws, "first", "scan", "--json")
        harness.say("scan: second scan (unchanged tree)")
        second = _tracesd(ws, "second", "scan", "--json")
        wrong = harness.wrong_rows(ws.db, corpus.expected_rows())
        checks = _report(result, corpus, first, second, read_s + git_s, startup, wrong)
        ws.keep = not checks
        result.raw.update(
            corpus=corpus.describe(),
            floor={"read_all_s": read_s, "git_s": git_s, "git_processes": 3 * len(repos)},
            startup=dataclasses.asdict(startup),
            first=dataclasses.asdict(first),
            second=dataclasses.asdict(second),
            wrong_rows=wrong[:20],
        )
    return result


def _tracesd(ws: Workspace, label: str, *args: str) -> Child:
    child = measure.run_child([TRACESD, *args], ws.env, stderr=ws.root / f"{label}.stderr")
    if child.returncode != 0:
        raise measure.BenchError(
            f"tracesd {' '.join(args)} exited {child.returncode}: {ws.root}/{label}.stderr"
        )
    return child


def _read_all(paths: Sequence[Path]) -> float:
    """Seconds to read every file once, whole, in 1 MB chunks."""
    buffer = bytearray(1 << 20)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return time.perf_counter() - started


def _git_queries(repos: Sequence[Repo], env: dict[str, str]) -> float:
    """Seconds for the daemon's three git queries, sequentially, in every repository."""
    started = time.perf_counter()
    for repo in repos:
        harness.git_queries(repo.path, env)
    return time.perf_counter() - started


def _report(
    result: Result,
    corpus: Corpus,
    first: Child,
    second: Child,
    floor_s: float,
    startup: Child,
    wrong: list[str],
) -> bool:
    """Add the rows; False when a correctness check failed (the counts or the rows)."""
    n = len(corpus.sessions)
    one = json.loads(first.stdout)
    two = json.loads(second.stdout)
    first_ok = (one["discovered"], one["indexed"], one["errors"], one["new"]) == (n, n, 0, n)
    second_ok = (two["discovered"], two["unchanged"], two["new"], two["updated"]) == (n, n, 0, 0)
    # The speed-up compares the scans' own work (`duration_s`): both processes also pay the
    # same ~0.2 s of interpreter start and imports, shown on its own in the rows below.
    speedup = one["duration_s"] / max(two["duration_s"], 1e-3)
    result.rows += [
        Row("corpus", corpus.summary()),
        at_least(
            "first scan rate",
            n / first.wall_s,
            RATE_TARGET,
            "sessions/s",
            floor=f"{fmt(n / floor_s, 'sessions/s', 0)} (read all + git)",
            digits=0,
        ),
        Row(
            "first scan wall time",
            f"{fmt(first.wall_s, 's', 2)} (scan itself {one['duration_s']} s, "
            f"CPU {first.cpu_s:.2f} s)",
            floor=f"{fmt(floor_s, 's', 2)} (read all + {3 * REPOS} git)",
        ),
        at_most(
            "first scan peak RSS",
            first.peak_rss_mb,
            RSS_TARGET_MB,
            "MB",
            floor=f"{fmt(startup.peak_rss_mb, 'MB')} (tracesd --version)",
        ),
        _counts_row("first scan counts", one, ("discovered", "indexed", "errors", "new"), first_ok),
        Row(
            "rows with the right directory and git context",
            f"{n - len(wrong):,}/{n:,}",
            f"{n:,}/{n:,}",
            passed=not wrong,
        ),
        Row(
            "second scan wall time",
            f"{fmt(second.wall_s, 's', 2)} (scan itself {two['duration_s']} s)",
            floor=f"{fmt(startup.wall_s, 's', 2)} (tracesd --version)",
        ),
        at_least("second scan speed-up (scan itself)", speedup, SPEEDUP_TARGET, "x", digits=1),
        Row(
            "second scan speed-up (wall, start-up included)",
            fmt(first.wall_s / second.wall_s, "x", 1),
        ),
        at_most(
            "second scan peak RSS",
            second.peak_rss_mb,
            RSS_TARGET_MB,
            "MB",
            floor=f"{fmt(startup.peak_rss_mb, 'MB')} (tracesd --version)",
        ),
        _counts_row(
            "second scan counts", two, ("discovered", "unchanged", "new", "updated"), second_ok
        ),
    ]
    return first_ok and second_ok and not wrong


def _counts_row(metric: str, report: dict[str, Any], keys: Sequence[str], ok: bool) -> Row:
    return Row(metric, " ".join(f"{k}={report[k]}" for k in keys), "as expected", passed=ok)
