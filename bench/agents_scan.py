"""agents: `tracesd scan` over a HOME holding 1,000 sessions of each of the nine agents.

Claude Code, Codex and Gemini CLI sessions come from bench/corpus.py, the others from
bench/agents/<agent>.py; all of them work in 30 real git repositories. Each agent is then
scanned on its own (`[agents] enabled = [agent]`, a fresh database each time), as a
subprocess, so sessions/s is per agent. The rate is over the scan's own time
(`duration_s`: discovery to the last commit): at 1,000 sessions the process's fixed
~0.25 s of interpreter start and imports would be a quarter of it, and it is shown beside
(wall time). A last scan with all nine enabled indexes the whole HOME at once.

Floor, same run and per agent: reading every file under the agent's roots once, whole.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import harness, measure
from bench.corpus import Spec, generate
from bench.harness import TRACESD, GitRow, Options, Repo, Workspace
from bench.measure import Child
from bench.report import Result, Row, at_least, fmt
from tracesd.capture.adapters import build_adapters
from tracesd.config import load_config

PER_AGENT = 1_000
REPOS = 30
RATE_TARGET = 1_000.0
#: the first three agents' sessions come from bench/corpus.py (JSONL, realistic sizes)
_CORPUS_AGENTS = ("claude-code", "codex", "gemini-cli")
#: the others' generators: bench/agents/<module>.py
_MODULES = {
    "opencode": "opencode",
    "pi": "pi",
    "amp": "amp",
    "cline": "cline",
    "cursor": "cursor",
    "copilot": "copilot",
}

Generator = Callable[[Path, Sequence[Path], int, int], dict[str, str]]


def run(options: Options) -> Result:
    result = Result("agents")
    with Workspace("agents") as ws:
        harness.say(f"agents: creating {REPOS} repositories")
        repos = harness.make_repos(ws.root / "repos", REPOS, ws.git_env)
        expected = _generate(ws.home, repos, options.seed)
        os.sync()
        roots = _roots(ws.env)
        raw: dict[str, Any] = {}
        all_ok = True
        for agent, rows in expected.items():
            harness.say(f"agents: scanning {len(rows):,} {agent} sessions")
            floor_s = _read_all(roots[agent])
            child, report, wrong = _scan(ws, agent, [agent], rows)
            ok = _report_agent(result, agent, len(rows), child, report, wrong, floor_s)
            all_ok = all_ok and ok
            raw[agent] = {
                "child": dataclasses.asdict(child),
                "report": report,
                "floor_read_s": floor_s,
            }
            raw[agent]["wrong_rows"] = wrong[:10]
        harness.say("agents: scanning all nine at once")
        everything = {k: v for rows in expected.values() for k, v in rows.items()}
        child, report, wrong = _scan(ws, "all", list(expected), everything)
        n = len(everything)
        result.rows.append(
            Row(
                f"all nine agents at once: {n:,} sessions",
                f"{fmt(n / child.wall_s, 'sessions/s', 0)} ({fmt(child.wall_s, 's', 2)} wall, "
                f"scan itself {report['duration_s']} s), peak RSS {fmt(child.peak_rss_mb, 'MB')}",
                passed=not wrong and report["new"] == n,
            )
        )
        raw["all"] = {
            "child": dataclasses.asdict(child),
            "report": report,
            "wrong_rows": wrong[:10],
        }
        result.raw.update(per_agent=PER_AGENT, repos=REPOS, scans=raw)
        ws.keep = not (all_ok and not wrong)
    return result


def _generate(home: Path, repos: Sequence[Repo], seed: int) -> dict[str, dict[str, GitRow]]:
    """{agent: {trace id: expected row}} after writing every agent's sessions."""
    by_path = {str(r.path): r for r in repos}
    expected: dict[str, dict[str, GitRow]] = {}
    for i, agent in enumerate(_CORPUS_AGENTS):
        harness.say(f"agents: generating {PER_AGENT:,} {agent} sessions")
        corpus = generate(home, repos, Spec(PER_AGENT, seed + i, mix={agent: 100}))
        expected[agent] = corpus.expected_rows()
    cwds = [r.path for r in repos]
    for i, (agent, module) in enumerate(_MODULES.items(), len(_CORPUS_AGENTS)):
        harness.say(f"agents: generating {PER_AGENT:,} {agent} sessions")
        make: Generator = importlib.import_module(f"bench.agents.{module}").generate
        # a seed of its own per agent: ids drawn from one seed would collide across agents
        written = make(home, cwds, PER_AGENT, seed * 100 + i)
        expected[agent] = {
            trace_id: _row(cwd, by_path[_repo_of(cwd, by_path)])
            for trace_id, cwd in written.items()
        }
    return expected


def _repo_of(cwd: str, repos: Mapping[str, Repo]) -> str:
    path = cwd
    while path not in repos:
        parent = os.path.dirname(path)
        if parent == path:
            raise measure.BenchError(f"generator used a cwd outside the repositories: {cwd}")
        path = parent
    return path


def _row(cwd: str, repo: Repo) -> GitRow:
    return (cwd, repo.remote, repo.branch, repo.head)


def _roots(env: Mapping[str, str]) -> dict[str, list[str]]:
    config = load_config(environ=dict(env), overrides={})
    return {a.agent_id: list(a.roots()) for a in build_adapters(config)}


def _scan(
    ws: Workspace, label: str, agents: list[str], rows: Mapping[str, GitRow]
) -> tuple[Child, dict[str, Any], list[str]]:
    db = ws.root / f"{label}.db"
    config = ws.root / f"{label}.toml"
    enabled = ", ".join(json.dumps(a) for a in agents)
    config.write_text(f'[storage]\ndb_path = "{db}"\n\n[agents]\nenabled = [{enabled}]\n')
    child = measure.run_child(
        [TRACESD, "--config", str(config), "scan", "--json"],
        ws.env,
        stderr=ws.root / f"{label}.stderr",
    )
    if child.returncode != 0:
        raise measure.BenchError(f"tracesd scan ({label}) exited {child.returncode}")
    return child, json.loads(child.stdout), harness.wrong_rows(db, rows)


def _report_agent(
    result: Result,
    agent: str,
    n: int,
    child: Child,
    report: dict[str, Any],
    wrong: list[str],
    floor_s: float,
) -> bool:
    right = report["new"] == n and report["errors"] == 0 and not wrong
    result.rows += [
        at_least(
            f"{agent}: {n:,} sessions",
            n / report["duration_s"],
            RATE_TARGET,
            "sessions/s",
            floor=f"reading its files: {fmt(floor_s, 's', 3)}",
            digits=0,
        ),
        Row(
            f"{agent}: scan",
            f"scan itself {report['duration_s']} s ({fmt(n / child.wall_s, 'sessions/s', 0)}"
            f" over {fmt(child.wall_s, 's', 2)} wall incl. start-up; CPU {child.cpu_s:.2f} s, "
            f"peak RSS {fmt(child.peak_rss_mb, 'MB')}); "
            f"{report['discovered']:,} files, {report['new']:,} new, {report['errors']} errors; "
            f"rows right {n - len(wrong):,}/{n:,}",
            f"new={n:,}, errors=0, every row right",
            passed=right,
        ),
    ]
    return right


def _read_all(roots: Sequence[str]) -> float:
    """Seconds to read every file under `roots` once, whole."""
    buffer = bytearray(1 << 20)
    started = time.perf_counter()
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                with open(os.path.join(directory, name), "rb", buffering=0) as f:
                    while f.readinto(buffer):
                        pass
    return time.perf_counter() - started
