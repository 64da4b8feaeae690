"""Seeded, realistic session corpora on disk: Claude Code, Codex and Gemini CLI (JSONL).

Session sizes are log-normal (median ~30 KB, clipped to 2 KB .. 2 MB), and some tool
results put 100 KB+ on a single line. Generation is fast because bulk text comes from a
small pool of pre-serialised JSON strings; per line only a small envelope (ids, cwd,
timestamps) is serialised. The same seed gives the same ids, sizes and layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import GitRow, Repo, Workspace
from bench.records import MARK, ClaudeChain, Clock, Lines, Pool
from bench.report import percentile

AGENT_MIX = {"claude-code": 60, "codex": 25, "gemini-cli": 15}
MIN_BYTES = 2 * 1024
MEDIAN_BYTES = 30 * 1024
MAX_BYTES = 2 * 1024 * 1024
SIGMA = 1.3
#: sessions start within this many days before _EPOCH
SPREAD_DAYS = 180
_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Spec:
    sessions: int
    seed: int
    #: Claude sessions that also have `<uuid>/subagents/` and `<uuid>/tool-results/`
    sidecar_share: float = 0.3
    #: Claude and Codex sessions whose cwd is `<repo>/src`, not the repository root
    subdir_share: float = 0.2
    #: percent of sessions per agent (the rest are Claude Code's)
    mix: Mapping[str, int] = field(default_factory=lambda: dict(AGENT_MIX))


@dataclass(frozen=True, slots=True)
class Session:
    agent: str
    id: str
    path: Path
    cwd: Path
    repo: Repo
    size: int


@dataclass(frozen=True, slots=True)
class Corpus:
    sessions: list[Session]
    long_lines: int
    #: subagent transcripts, persisted tool results, `.project_root` markers
    other_files: int

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.sessions)

    def by_agent(self) -> Counter[str]:
        return Counter(s.agent for s in self.sessions)

    def expected_rows(self) -> dict[str, GitRow]:
        """What tracesd must store for each session (the repositories were not touched)."""
        return {
            s.id: (str(s.cwd), s.repo.remote, s.repo.branch, s.repo.head) for s in self.sessions
        }

    def summary(self) -> str:
        sizes = sorted(s.size for s in self.sessions)
        agents = ", ".join(f"{a} {n:,}" for a, n in sorted(self.by_agent().items()))
        return (
            f"{len(sizes):,} sessions ({agents}), {self.total_bytes / 2**20:,.0f} MB, "
            f"median {percentile(sizes, 50) / 1024:.0f} KB, max {sizes[-1] / 2**20:.1f} MB, "
            f"{self.long_lines:,} lines >= 100 KB"
        )

    def describe(self) -> dict[str, Any]:
        sizes = sorted(s.size for s in self.sessions)
        return {
            "sessions": len(sizes),
            "by_agent": dict(self.by_agent()),
            "bytes": self.total_bytes,
            "size_kb": {f"p{p}": percentile(sizes, p) / 1024 for p in (1, 10, 50, 90, 99, 100)},
            "long_lines": self.long_lines,
            "other_files": self.other_files,
        }


def agent_roots(home: Path) -> list[Path]:
    """The roots tracesd watches by default under `home` (those this module writes to)."""
    return [
        home / ".claude" / "projects",
        home / ".codex" / "sessions",
        home / ".gemini" / "tmp",
    ]


def claude_project(home: Path, cwd: Path) -> Path:
    """Claude Code's directory for a cwd: every character but [a-zA-Z0-9] becomes `-`."""
    return home / ".claude" / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", str(cwd))


def claude_session(
    session_id: str, cwd: Path, branch: str, prompt: str, rng: random.Random
) -> bytes:
    """A fresh Claude Code transcript: the prompt line and the first reply line."""
    lines = Lines()
    clock = Clock(datetime.now(UTC) - timedelta(minutes=1), rng)
    chain = ClaudeChain(session_id, str(cwd), branch, clock, lines)
    chain.prompt(prompt)
    chain.reply(json.dumps([{"type": "text", "text": "Looking at it now."}]).encode())
    return b"".join(lines.parts)


def build(ws: Workspace, label: str, repos: int, spec: Spec) -> tuple[list[Repo], Corpus]:
    """`repos` real repositories and `spec.sessions` sessions in them, flushed to disk so
    no writeback of the corpus competes with the measurements."""
    harness.say(f"{label}: creating {repos} repositories")
    made = harness.make_repos(ws.root / "repos", repos, ws.git_env)
    harness.say(f"{label}: generating {spec.sessions:,} sessions")
    corpus = generate(ws.home, made, spec)
    os.sync()
    return made, corpus


def generate(home: Path, repos: Sequence[Repo], spec: Spec) -> Corpus:
    return _Generator(home, repos, spec).run()


# ------------------------------------------------------------------------- internals


@dataclass(slots=True)
class _Draft:
    """A session being written: where it belongs, how big it should get, its lines."""

    repo: Repo
    cwd: Path
    sid: str
    size: int
    clock: Clock
    lines: Lines

    @property
    def room(self) -> int:
        return self.size - self.lines.size


class _Generator:
    def __init__(self, home: Path, repos: Sequence[Repo], spec: Spec) -> None:
        self._home = home
        self._repos = repos
        self._spec = spec
        self._rng = random.Random(spec.seed)
        self._pool = Pool(self._rng)
        self._dirs: set[Path] = set()
        self._long = 0
        self._other_files = 0
        # a few repositories get most sessions, like a real user's
        self._weights = [1 / (i + 1) ** 0.8 for i in range(len(repos))]

    def run(self) -> Corpus:
        n = self._spec.sessions
        agents = [a for a, share in self._spec.mix.items() for _ in range(n * share // 100)]
        agents += ["claude-code"] * (n - len(agents))
        self._rng.shuffle(agents)
        writers = {"claude-code": self._claude, "codex": self._codex, "gemini-cli": self._gemini}
        sessions = [writers[agent]() for agent in agents]
        return Corpus(sessions, self._long, self._other_files)

    # -- one session per agent ------------------------------------------------------

    def _claude(self) -> Session:
        d = self._draft(subdirs=True)
        chain = ClaudeChain(d.sid, str(d.cwd), d.repo.branch, d.clock, d.lines)
        chain.snapshot()
        chain.prompt(self._rng.choice(self._pool.prompts))
        while d.room > 0:
            if self._rng.random() < 0.6:
                chain.tool_round(self._pool.output(d.room))
            else:
                chain.reply(self._text_block())
        chain.reply(self._text_block())
        d.lines.add({"type": "ai-title", "aiTitle": "Bench session", "sessionId": d.sid})
        project = claude_project(self._home, d.cwd)
        if self._rng.random() < self._spec.sidecar_share:
            self._claude_sidecar(project / d.sid, d)
        return self._write("claude-code", project / f"{d.sid}.jsonl", d)

    def _claude_sidecar(self, folder: Path, d: _Draft) -> None:
        """`<session>/subagents/agent-<id>.jsonl` (+ .meta.json) and `<session>/tool-results/`."""
        agent_id = f"{self._rng.getrandbits(64):016x}"
        lines = Lines()
        for kind, text in (("user", "List every call site"), ("assistant", "Found three.")):
            record = {
                "isSidechain": True,
                "agentId": agent_id,
                "cwd": str(d.cwd),
                "sessionId": d.sid,
                "gitBranch": d.repo.branch,
                "type": kind,
                "message": {"role": kind, "content": text},
                "uuid": d.clock.uuid(),
                "timestamp": d.clock.tick(),
            }
            lines.add(record)
        subagents = folder / "subagents"
        self._put(subagents / f"agent-{agent_id}.jsonl", lines.parts)
        meta = json.dumps({"agentType": "Explore", "description": "Find call sites"}).encode()
        self._put(subagents / f"agent-{agent_id}.meta.json", [meta])
        self._put(folder / "tool-results" / f"toolu_{agent_id}.txt", [self._pool.output(0)])
        self._other_files += 3

    def _codex(self) -> Session:
        d = self._draft(subdirs=True)
        started = d.clock.now
        ts = d.clock.tick()
        repo = d.repo
        meta = {
            "id": d.sid,
            "timestamp": ts,
            "cwd": str(d.cwd),
            "originator": "codex_cli_rs",
            "cli_version": "0.152.0",
            "source": "cli",
            "model_provider": "openai",
            "base_instructions": {"text": MARK},
            "git": {"commit_hash": repo.head, "branch": repo.branch, "repository_url": repo.remote},
        }
        instructions = self._rng.choice(self._pool.instructions)
        d.lines.add({"timestamp": ts, "type": "session_meta", "payload": meta}, instructions)
        context = f"<environment_context>\n  <cwd>{d.cwd}</cwd>\n</environment_context>"
        self._codex_item(d, "user", json.dumps(context).encode())
        turn = {
            "turn_id": d.clock.uuid(),
            "cwd": str(d.cwd),
            "approval_policy": "on-request",
            "model": "gpt-5.1-codex",
            "effort": "medium",
        }
        self._codex_record(d, "turn_context", turn)  # each turn's; the first names the model
        prompt = self._rng.choice(self._pool.prompts)
        self._codex_record(d, "event_msg", {"type": "user_message", "message": prompt})
        while d.room > 0:
            call_id = "call_" + d.clock.uuid().replace("-", "")[:24]
            call = {
                "type": "function_call",
                "name": "shell",
                "arguments": '{"command":["make","test"]}',
                "call_id": call_id,
            }
            self._codex_record(d, "response_item", call)
            output = {"type": "function_call_output", "call_id": call_id, "output": MARK}
            self._codex_record(d, "response_item", output, self._pool.output(d.room))
            if self._rng.random() < 0.3:
                self._codex_item(d, "assistant", self._pool.message())
        self._codex_record(d, "event_msg", {"type": "agent_message", "message": "Done."})
        self._codex_record(d, "event_msg", {"type": "task_complete", "last_agent_message": "Done."})
        day = self._home / ".codex" / "sessions" / started.strftime("%Y/%m/%d")
        return self._write("codex", day / f"rollout-{started:%Y-%m-%dT%H-%M-%S}-{d.sid}.jsonl", d)

    def _codex_item(self, d: _Draft, role: str, text: bytes) -> None:
        kind = "input_text" if role == "user" else "output_text"
        payload = {"type": "message", "role": role, "content": [{"type": kind, "text": MARK}]}
        self._codex_record(d, "response_item", payload, text)

    def _codex_record(
        self, d: _Draft, kind: str, payload: dict[str, Any], blob: bytes = b""
    ) -> None:
        d.lines.add({"timestamp": d.clock.tick(), "type": kind, "payload": payload}, blob)

    def _gemini(self) -> Session:
        d = self._draft(subdirs=False)
        started = d.clock.now
        project = self._home / ".gemini" / "tmp" / d.repo.path.name
        marker = project / ".project_root"
        if not marker.exists():
            self._put(marker, [str(d.cwd).encode()])
            self._other_files += 1
        ts = d.clock.tick()
        digest = hashlib.sha256(str(d.cwd).encode()).hexdigest()
        d.lines.add({"sessionId": d.sid, "projectHash": digest, "startTime": ts, "lastUpdated": ts})
        prompt = [{"text": self._rng.choice(self._pool.prompts)}]
        d.lines.add(
            {"id": d.clock.uuid(), "timestamp": d.clock.tick(), "type": "user", "content": prompt}
        )
        while d.room > 0:
            ts = d.clock.tick()
            response = {"functionResponse": {"name": "read_file", "response": {"output": MARK}}}
            call = {
                "id": "read_file-" + d.clock.uuid()[:8],
                "name": "read_file",
                "args": {"path": "src/main.py"},
                "result": [response],
                "status": "success",
                "timestamp": ts,
            }
            record = {
                "id": d.clock.uuid(),
                "timestamp": ts,
                "type": "gemini",
                "content": "Reading the file.",
                "toolCalls": [call],
                "model": "gemini-2.5-pro",
            }
            d.lines.add(record, self._pool.output(d.room))
            d.lines.add({"$set": {"lastUpdated": ts}})
        done = {
            "id": d.clock.uuid(),
            "timestamp": d.clock.tick(),
            "type": "gemini",
            "content": "Done.",
        }
        d.lines.add(done)
        return self._write(
            "gemini-cli",
            project / "chats" / f"session-{started:%Y-%m-%dT%H-%M}-{d.sid[:8]}.jsonl",
            d,
        )

    # -- shared -------------------------------------------------------------------------

    def _draft(self, *, subdirs: bool) -> _Draft:
        rng = self._rng
        repo = rng.choices(self._repos, self._weights)[0]
        cwd = repo.path
        if subdirs and rng.random() < self._spec.subdir_share:
            cwd = repo.path / "src"
            cwd.mkdir(exist_ok=True)
        size = rng.lognormvariate(math.log(MEDIAN_BYTES), SIGMA)
        start = _EPOCH - timedelta(seconds=rng.uniform(0, SPREAD_DAYS * 86400))
        clock = Clock(start, rng)
        size = int(min(MAX_BYTES, max(MIN_BYTES, size)))
        return _Draft(repo, cwd, clock.uuid(), size, clock, Lines())

    def _text_block(self) -> bytes:
        return b'[{"type":"text","text":' + self._pool.message() + b"}]"

    def _write(self, agent: str, path: Path, d: _Draft) -> Session:
        self._put(path, d.lines.parts)
        self._long += d.lines.long
        return Session(agent, d.sid, path, d.cwd, d.repo, d.lines.size)

    def _put(self, path: Path, parts: list[bytes]) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        with open(path, "wb") as f:
            f.writelines(parts)
