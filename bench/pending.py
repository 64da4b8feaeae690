"""A client database of realistic pending traces, written with tracesd's own Store, so the
outbox triggers mark every one of them pending exactly as captures do.

Traces: 60% Claude Code, 25% Codex, 15% Gemini CLI, in 100 repositories (a few get most
traces; a fifth of the sessions run in `<repo>/src`), each repository on `main` or a
feature branch with a handful of commits; prompt-like titles (20-200 characters) and
previews (40-500), session file paths, last activity within 180 days. Nothing is shared.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import string
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import AGENT_MIX, claude_project
from bench.harness import GitRow
from bench.measure import BenchError
from tracesd.models import PREVIEW_MAX, TITLE_MAX, Capture, Trace
from tracesd.store.database import Store
from tracesd.store.outbox import Outbox

SPREAD_MS = 180 * 86_400_000
_NOW_MS = 1_795_000_000_000  # 2026-11-18: fixed, so a seed gives the same traces


@dataclass(frozen=True, slots=True)
class _Repo:
    path: str
    remote: str
    branch: str
    commits: tuple[str, ...]


def traces(home: Path, count: int, repos: int, seed: int) -> list[Trace]:
    rng = random.Random(seed)
    words = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(2000)
    ]
    made = [_repo(home, i, rng) for i in range(repos)]
    weights = [1 / (i + 1) ** 0.8 for i in range(repos)]
    agents = [a for a, share in AGENT_MIX.items() for _ in range(count * share // 100)]
    agents += ["claude-code"] * (count - len(agents))
    rng.shuffle(agents)
    out: list[Trace] = []
    for agent in agents:
        repo = rng.choices(made, weights)[0]
        directory = repo.path + ("/src" if rng.random() < 0.2 else "")
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        last = _NOW_MS - rng.randrange(SPREAD_MS)
        out.append(
            Trace(
                id=sid,
                agent_id=agent,
                title=_sentence(rng, words, rng.randint(20, TITLE_MAX)),
                preview=_sentence(rng, words, rng.randint(40, PREVIEW_MAX)),
                timestamp=last,
                directory=directory,
                source_path=_source_path(home, agent, directory, sid),
                git_remote_url=repo.remote,
                git_branch=repo.branch,
                git_ref=rng.choice(repo.commits),
                created_at=last - rng.randrange(60_000, 3 * 3_600_000),
                updated_at=last,
            )
        )
    return out


def expected_rows(made: list[Trace]) -> dict[str, GitRow]:
    """What the server must hold for each trace: (projectPath, remote, branch, ref)."""
    return {
        t.id: (t.directory or "", t.git_remote_url or "", t.git_branch or "", t.git_ref or "")
        for t in made
    }


def describe(made: list[Trace]) -> str:
    agents = ", ".join(f"{a} {n:,}" for a, n in sorted(Counter(t.agent_id for t in made).items()))
    remotes = len({t.git_remote_url for t in made})
    return f"{len(made):,} pending traces ({agents}) in {remotes} repositories"


def write(db: Path, made: list[Trace]) -> int:
    """Store the traces (one group-commit transaction); how many the outbox has pending."""
    return asyncio.run(_write(db, made))


async def _write(db: Path, made: list[Trace]) -> int:
    store = await Store.open(db)
    try:
        await store.write(Capture(new=tuple(made)))
        pending = (await Outbox(store).counts()).pending
    finally:
        await store.close()
    if pending != len(made):
        raise BenchError(f"{db}: {pending} traces pending after writing {len(made)}")
    return pending


def copy(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (the backup API, WAL included)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _repo(home: Path, i: int, rng: random.Random) -> _Repo:
    branch = f"feature/sync-{i}" if i % 3 == 0 else "main"
    commits = tuple(f"{rng.getrandbits(160):040x}" for _ in range(rng.randint(1, 8)))
    return _Repo(
        str(home / "src" / f"repo{i}"), f"https://github.com/bench/repo{i}", branch, commits
    )


def _sentence(rng: random.Random, words: list[str], chars: int) -> str:
    text = " ".join(rng.choices(words, k=chars // 5 + 1))[:chars].strip()
    return text[:1].upper() + text[1:]


def _source_path(home: Path, agent: str, directory: str, sid: str) -> str:
    if agent == "claude-code":
        return str(claude_project(home, Path(directory)) / f"{sid}.jsonl")
    if agent == "codex":
        return str(home / ".codex" / "sessions" / "2026" / "11" / "01" / f"rollout-{sid}.jsonl")
    return str(
        home / ".gemini" / "tmp" / Path(directory).name / "chats" / f"session-{sid[:8]}.jsonl"
    )
