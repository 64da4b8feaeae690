"""cli_share: the real Traces CLI 0.6.31 shares a Claude session to `tracesd server`, side
by side with the same command against a server that does nothing (the floor).

`traces share --trace-id <id> --json --key trk_...`, unmodified, in `env -i` with a HOME of
its own and TRACES_HTTP_URL, TRACES_API_URL, TRACES_URL set to the server (INTERFACE 8).
Each repetition is a first share of a new session in a fresh HOME (the CLI indexes
~/.claude, PUTs the subagent and the session, POSTs each one's messages), so the server
inserts every time. Wall time is the CLI's, spawn to exit. Two sessions: a short one (3
turns) and a long one (200 turns, 800 message parts); each has one subagent.

Floor, same run: `python -m bench.floorserver` (a subprocess on 127.0.0.1 answering the
minimal shapes of docs/traces-cli-0.6.31.md (f)). The two servers alternate (the order
flips each repetition); target: median against `tracesd server` <= 1.5x the floor's. The
server must then hold every shared trace with all its message parts (checked through the
API with the key), and each share must print `<base>/s/<the server's id>`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.apiserver import ApiServer
from bench.floorserver import FloorServer
from bench.harness import Options, Workspace
from bench.measure import BenchError, run_child
from bench.report import Result, Row, at_most, distribution, fmt

ROOT = Path(__file__).resolve().parent.parent
#: where `make traces-cli` installs the pinned CLI (tests/tracescli.py)
CLI = ROOT / ".cache/traces-cli/node_modules/@traces-sh/traces-linux-x64/bin/traces"
KEY = "trk_bench_cli_share"
REPETITIONS = 10
RATIO_TARGET = 1.5
#: (label, turns); each turn is a prompt, a tool call, its result and an answer
SESSIONS = (("3-turn session", 3), ("200-turn session", 200))
PARTS_PER_TURN = 4
CWD = "/tmp/benchshare/app"


@dataclass(slots=True)
class Runs:
    """Wall times (ms) of the shares of one session size against one server."""

    ms: list[float] = field(default_factory=list)
    #: each share's (session id, sharedUrl), when it exited 0
    shared: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run(options: Options) -> Result:
    result = Result("cli_share")
    version = _cli_version()
    with Workspace("cli_share") as ws:
        with (
            ApiServer(ws.env, ws.root / "server.db", ws.root / "server.log", token=KEY) as api,
            FloorServer(ws.env, ws.root / "floor.log") as floor,
        ):
            servers = {"tracesd": api.url, "floor": floor.url}
            measured: dict[tuple[str, str], Runs] = {}
            for label, turns in SESSIONS:
                harness.say(f"cli_share: {label}, {REPETITIONS} shares per server, alternated")
                for i in range(REPETITIONS):
                    order = list(servers) if i % 2 == 0 else list(reversed(servers))
                    for name in order:
                        runs = measured.setdefault((label, name), Runs())
                        _share(ws, f"{name}-{turns}-{i}", servers[name], turns, runs)
            checks = {
                label: _check(api.url, label, measured[(label, "tracesd")], turns)
                for label, turns in SESSIONS
            }
        ws.keep = not all(r.passed for r in checks.values())
        for label, turns in SESSIONS:
            _rows(result, label, turns, measured[(label, "tracesd")], measured[(label, "floor")])
            result.rows.append(checks[label])
        result.raw.update(
            cli_version=version,
            repetitions=REPETITIONS,
            sessions={
                label: {
                    name: {
                        "ms": measured[(label, name)].ms,
                        "dist": distribution(measured[(label, name)].ms),
                        "failures": measured[(label, name)].failures,
                    }
                    for name in servers
                }
                for label, _ in SESSIONS
            },
        )
    return result


def _cli_version() -> str:
    try:
        done = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise BenchError(f"the Traces CLI is not at {CLI} ({exc}): run `make traces-cli`") from exc
    found = re.search(r"\d+\.\d+\.\d+", done.stdout)
    pin = re.search(r"^TRACES_CLI_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    if found is None or pin is None or found.group(0) != pin.group(1):
        raise BenchError(f"{CLI} says {done.stdout.strip()!r}, not the pin: run `make traces-cli`")
    return found.group(0)


def _share(ws: Workspace, name: str, base: str, turns: int, runs: Runs) -> None:
    """One first share of a new session, from a fresh HOME; its wall time into `runs`."""
    home = ws.root / "homes" / name
    session = write_session(home, turns)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "dumb"}
    env.update(TRACES_HTTP_URL=base, TRACES_API_URL=base, TRACES_URL=base)
    argv = [str(CLI), "share", "--trace-id", session, "--json", "--key", KEY]
    child = run_child(argv, env, stderr=ws.root / f"cli-{name}.log", timeout_s=120.0)
    runs.ms.append(child.wall_s * 1000)
    try:
        url = json.loads(child.stdout)["data"]["sharedUrl"]
    except (ValueError, KeyError, TypeError):
        url = None
    if child.returncode != 0 or not isinstance(url, str):
        said = (child.stdout + (ws.root / f"cli-{name}.log").read_text(errors="replace")).strip()
        runs.failures.append(f"{name}: exit {child.returncode}, {said[:200]}")
    else:
        runs.shared.append((session, url))


def _check(base: str, label: str, runs: Runs, turns: int) -> Row:
    """Every share exited 0 with `<base>/s/<id>` and the server holds all its parts."""
    right = 0
    wrong = list(runs.failures)
    for session, url in runs.shared:
        trace = _get(base, f"/v1/traces/{session}")["trace"]
        messages = _get(base, f"/v1/traces/{session}/messages?includeParts=true")["messages"]
        parts = sum(len(m.get("parts") or []) for m in messages)
        if url == f"{base}/s/{trace['id']}" and parts == turns * PARTS_PER_TURN:
            right += 1
        else:
            wrong.append(f"{session}: url {url}, id {trace.get('id')}, {parts} parts")
    return Row(
        f"traces share, {label}: exit 0 with the server's URL, every part stored",
        f"{right}/{REPETITIONS}" + (f" ({'; '.join(wrong[:3])})" if wrong else ""),
        f"{REPETITIONS}/{REPETITIONS}",
        passed=right == REPETITIONS,
    )


def _get(base: str, path: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["data"]


def _rows(result: Result, label: str, turns: int, ours: Runs, floor: Runs) -> None:
    if not ours.ms or not floor.ms:
        raise BenchError(f"cli_share: no shares timed for the {label}")
    mine, least = distribution(ours.ms), distribution(floor.ms)
    floor_text = (
        f"do-nothing server: median {fmt(least['p50'], 'ms')}, p90 {fmt(least['p90'], 'ms')}"
    )
    ratio = at_most(
        f"traces share, {label}: tracesd server vs floor (median)",
        mine["p50"] / least["p50"],
        RATIO_TARGET,
        "x",
        floor=floor_text,
        digits=2,
    )
    if ours.failures or floor.failures:  # a failed share is no time to compare
        ratio = dataclasses.replace(ratio, value=f"{ratio.value} (shares failed)", passed=False)
    result.rows += [
        ratio,
        Row(
            f"traces share, {label}: wall time against tracesd server",
            f"median {fmt(mine['p50'], 'ms')}, p90 {fmt(mine['p90'], 'ms')} "
            f"(p90 {mine['p90'] / least['p90']:.2f}x the floor's; {len(ours.ms)} shares, "
            f"{turns * PARTS_PER_TURN} parts each)",
        ),
    ]


# -------------------------------------------------------------------- the session


def write_session(home: Path, turns: int) -> str:
    """A Claude Code session of `turns` turns (prompt, Read tool call, its result, answer)
    with one subagent, in `home`, as Claude Code lays it out; its id."""
    session = str(uuid.uuid4())
    project = home / ".claude" / "projects" / CWD.replace("/", "-")
    project.mkdir(parents=True)
    lines = _Lines(session)
    for turn in range(turns):
        lines.user(f"Turn {turn}: read src/module_{turn}.py and explain the retry policy.")
        call = f"toolu_{session[:8]}_{turn:04d}"
        read = {"type": "tool_use", "id": call, "name": "Read"}
        lines.assistant(f"msg_{turn}_a", [{**read, "input": {"file_path": f"src/m{turn}.py"}}])
        result = {"type": "tool_result", "tool_use_id": call, "content": _source(turn)}
        lines.user([result])
        answer = f"Module {turn} retries three times with backoff; " + "detail " * 40
        lines.assistant(f"msg_{turn}_b", [{"type": "text", "text": answer}])
    lines.records.append({"type": "ai-title", "aiTitle": "Retry policy tour", "sessionId": session})
    lines.write(project / f"{session}.jsonl")
    agent = _Lines(session, agent_id="b3f9c2e1b7d40e58")
    agent.user("List every call site of retry()")
    agent.assistant("msg_sub", [{"type": "text", "text": "Two: cli.py and jobs.py."}])
    agent.write(project / session / "subagents" / "agent-b3f9c2e1b7d40e58.jsonl")
    return session


def _source(turn: int) -> str:
    return "".join(f"def step_{turn}_{n}(x):\n    return retry(x, {n})\n" for n in range(20))


class _Lines:
    """The lines of one Claude transcript, chained by uuid, a second apart."""

    def __init__(self, session: str, *, agent_id: str | None = None) -> None:
        self.session, self.agent_id = session, agent_id
        self.records: list[dict[str, Any]] = []
        self._parent: str | None = None
        self._clock = 1795165800000

    def user(self, content: str | list[dict[str, Any]]) -> None:
        self._add("user", {"role": "user", "content": content})

    def assistant(self, message_id: str, content: list[dict[str, Any]]) -> None:
        usage = {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 0}
        self._add(
            "assistant",
            {
                "model": "claude-sonnet-4-5-20250929",
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "content": content,
                "stop_reason": "end_turn",
                "usage": usage,
            },
        )

    def _add(self, kind: str, message: dict[str, Any]) -> None:
        self._clock += 1000
        record_id = str(uuid.uuid4())
        stamp = self._clock
        record: dict[str, Any] = {
            "parentUuid": self._parent,
            "isSidechain": self.agent_id is not None,
            "userType": "external",
            "cwd": CWD,
            "sessionId": self.session,
            "version": "2.1.240",
            "type": kind,
            "message": message,
            "uuid": record_id,
            "timestamp": datetime.fromtimestamp(stamp / 1000, UTC).isoformat(
                timespec="milliseconds"
            ),
        }
        if self.agent_id is not None:
            record["agentId"] = self.agent_id
        self.records.append(record)
        self._parent = record_id

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
