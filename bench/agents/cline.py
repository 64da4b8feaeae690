"""Cline corpus: classic VS Code tasks and SDK-era sessions, laid out as Cline writes them.

About 60% are classic tasks in VS Code's `globalStorage/saoudrizwan.claude-dev/`:
`tasks/<ms>/ui_messages.json`, `api_conversation_history.json` and `task_metadata.json`,
and one `state/taskHistory.json` listing them (5% are missing from it, so their cwd comes
from the first API turn's environment details). The rest are SDK sessions in
`~/.cline/data/`: `sessions/<id>/<id>.json` and `<id>.messages.json` (some with a sub-agent
transcript beside them), and `db/sessions.db` with a row for each and for the sub-agents.
Transcript sizes are log-normal (median ~24 KB, clipped to 2 KB .. 400 KB); a fifth of the
sessions work in a subdirectory of their repository. The same seed gives the same files.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLASSIC_SHARE = 0.6
NO_HISTORY_SHARE = 0.05
SUBAGENT_SHARE = 0.15
SUBDIR_SHARE = 0.2
MEDIAN_BYTES = 24 * 1024
MIN_BYTES, MAX_BYTES = 2 * 1024, 400 * 1024
SIGMA = 1.0
#: sessions start one minute apart (plus jitter) from here: ids stay unique and sorted
EPOCH_MS = 1_780_000_000_000

_EXTENSION = "saoudrizwan.claude-dev"
_DDL = """CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, source TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, exit_code INTEGER, status TEXT NOT NULL,
    status_lock INTEGER NOT NULL DEFAULT 0, interactive INTEGER NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, cwd TEXT NOT NULL,
    workspace_root TEXT NOT NULL, team_name TEXT, enable_tools INTEGER NOT NULL,
    enable_spawn INTEGER NOT NULL, enable_teams INTEGER NOT NULL, parent_session_id TEXT,
    parent_agent_id TEXT, agent_id TEXT, conversation_id TEXT,
    is_subagent INTEGER NOT NULL DEFAULT 0, prompt TEXT, metadata_json TEXT,
    transcript_path TEXT NOT NULL DEFAULT '', hook_path TEXT NOT NULL, messages_path TEXT,
    updated_at TEXT NOT NULL)"""
_INSERT = (
    "INSERT INTO sessions (session_id, source, pid, started_at, ended_at, exit_code, status,"
    " interactive, provider, model, cwd, workspace_root, enable_tools, enable_spawn,"
    " enable_teams, parent_session_id, parent_agent_id, agent_id, is_subagent, prompt,"
    " metadata_json, hook_path, messages_path, updated_at)"
    " VALUES (?, 'vscode', ?, ?, ?, ?, ?, 1, 'anthropic', 'claude-sonnet-4-5', ?, ?, 1, 1, 0,"
    " ?, ?, ?, ?, ?, ?, '', ?, ?)"
)


class _Text:
    """Pre-made text of many sizes, so a session costs a few lookups, not a text generator."""

    def __init__(self, rng: random.Random) -> None:
        code = string.ascii_lowercase + "(){}=:._ \n"
        words = [
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(500)
        ]
        self.prompts = [
            " ".join(rng.choices(words, k=rng.randint(5, 30))).capitalize() for _ in range(200)
        ]
        self.replies = [
            " ".join(rng.choices(words, k=rng.randint(10, 120))) + "." for _ in range(200)
        ]
        # slices of one long random text: many sizes for the cost of one draw
        base = "".join(rng.choices(code, k=40_000))
        self.outputs = []
        for _ in range(300):
            n = int(math.exp(rng.uniform(5.5, 10.5)))
            at = rng.randrange(len(base) - n)
            self.outputs.append(base[at : at + n])


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    """Write `count` Cline sessions under `home`, over `cwds` in turn; {trace id: cwd}."""
    rng = random.Random(seed)
    text = _Text(rng)
    storage = home / ".config" / "Code" / "User" / "globalStorage" / _EXTENSION
    data = home / ".cline" / "data"
    written: dict[str, str] = {}
    history: list[dict[str, Any]] = []
    rows: list[tuple[Any, ...]] = []
    for i in range(count):
        cwd = str(cwds[i % len(cwds)])
        if rng.random() < SUBDIR_SHARE:
            cwd += "/src"
        start = EPOCH_MS + i * 60_000 + rng.randrange(60_000)
        budget = int(
            min(MAX_BYTES, max(MIN_BYTES, rng.lognormvariate(math.log(MEDIAN_BYTES), SIGMA)))
        )
        if rng.random() < CLASSIC_SHARE:
            trace_id = str(start)
            entry = _classic(storage / "tasks" / trace_id, start, cwd, budget, rng, text)
            if rng.random() >= NO_HISTORY_SHARE:
                history.append(entry)
        else:
            trace_id = (
                f"{start}_{''.join(rng.choices(string.ascii_lowercase + string.digits, k=5))}"
            )
            rows += _sdk(data / "sessions" / trace_id, trace_id, start, cwd, budget, rng, text)
        written[trace_id] = cwd
    (storage / "state").mkdir(parents=True, exist_ok=True)
    (storage / "state" / "taskHistory.json").write_text(_dumps(history))
    _store(data / "db" / "sessions.db", rows)
    return written


def _classic(
    task_dir: Path, start: int, cwd: str, budget: int, rng: random.Random, text: _Text
) -> dict[str, Any]:
    """One classic task's files; its taskHistory.json item."""
    prompt = rng.choice(text.prompts)
    details = (
        f"<environment_details>\n# VSCode Visible Files\nsrc/main.py\n\n# Current Time\n"
        f"{_iso(start)}\n\n# Current Working Directory ({cwd}) Files\nREADME.md\nsrc/\n"
        "tests/\n\n# Current Mode\nACT MODE\n</environment_details>"
    )
    ui: list[dict[str, Any]] = [{"ts": start, "type": "say", "say": "task", "text": prompt}]
    api: list[dict[str, Any]] = [_turn("user", f"<task>\n{prompt}\n</task>", details)]
    ts, size = start, 0
    while size < budget:
        ts += rng.randint(800, 20_000)
        reply, output = rng.choice(text.replies), rng.choice(text.outputs)
        request = {"request": f"<task>{prompt[:40]}</task>", "tokensIn": rng.randint(900, 40_000)}
        tool = {"tool": "readFile", "path": "src/main.py", "content": output}
        ui += [
            {"ts": ts, "type": "say", "say": "api_req_started", "text": json.dumps(request)},
            {"ts": ts + 300, "type": "say", "say": "text", "text": reply, "partial": False},
            {"ts": ts + 600, "type": "say", "say": "tool", "text": json.dumps(tool)},
        ]
        api += [_turn("assistant", reply), _turn("user", f"[read_file] Result:\n{output}")]
        size += 2 * (len(reply) + len(output)) + 400
    ts += 2_000
    ui.append({"ts": ts, "type": "say", "say": "completion_result", "text": text.replies[0]})
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "ui_messages.json").write_text(_dumps(ui))
    (task_dir / "api_conversation_history.json").write_text(_dumps(api))
    metadata = {
        "files_in_context": [{"path": "src/main.py", "record_state": "active"}],
        "model_usage": [{"ts": start + 400, "model_id": "claude-sonnet-4-5", "mode": "act"}],
    }
    (task_dir / "task_metadata.json").write_text(_dumps(metadata))
    return {
        "id": task_dir.name,
        "ts": ts,
        "task": prompt,
        "tokensIn": rng.randint(1_000, 90_000),
        "tokensOut": rng.randint(100, 9_000),
        "totalCost": round(rng.uniform(0.001, 2.5), 4),
        "size": size,
        "cwdOnTaskInitialization": cwd,
        "isFavorited": False,
        "modelId": "claude-sonnet-4-5",
    }


def _sdk(
    folder: Path, sid: str, start: int, cwd: str, budget: int, rng: random.Random, text: _Text
) -> list[tuple[Any, ...]]:
    """One SDK session's files; its sessions.db rows (the sub-agent's too)."""
    prompt = rng.choice(text.prompts)
    messages: list[dict[str, Any]] = [_message(sid, 0, "user", prompt)]
    size = 0
    while size < budget:
        reply, output = rng.choice(text.replies), rng.choice(text.outputs)
        n = len(messages)
        messages.append(_message(sid, n, "assistant", reply))
        messages.append(_message(sid, n + 1, "user", output))
        size += len(reply) + len(output) + 300
    ended = start + len(messages) * rng.randint(2_000, 12_000)
    folder.mkdir(parents=True, exist_ok=True)
    messages_path = folder / f"{sid}.messages.json"
    messages_path.write_text(_dumps(_messages_file(sid, messages, ended)))
    metadata = {"title": prompt[:120], "mode": "act"}
    manifest = {
        "version": 1,
        "session_id": sid,
        "source": "vscode",
        "pid": 40_000 + start % 20_000,
        "started_at": _iso(start),
        "ended_at": _iso(ended),
        "exit_code": 0,
        "status": "completed",
        "interactive": True,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "cwd": cwd,
        "workspace_root": cwd,
        "enable_tools": True,
        "enable_spawn": True,
        "enable_teams": False,
        "prompt": prompt,
        "metadata": metadata,
        "messages_path": str(messages_path),
    }
    (folder / f"{sid}.json").write_text(_dumps(manifest))
    pid = manifest["pid"]
    rows: list[tuple[Any, ...]] = [
        (
            sid,
            pid,
            _iso(start),
            _iso(ended),
            0,
            "completed",
            cwd,
            cwd,
            None,
            None,
            None,
            0,
            prompt,
            json.dumps(metadata),
            str(messages_path),
            _iso(ended),
        )
    ]
    if rng.random() < SUBAGENT_SHARE:
        agent = f"agent_{rng.randrange(1 << 20):05x}"
        sub = folder / f"{agent}.messages.json"
        sub_messages = [_message(sid, 0, "user", rng.choice(text.prompts))]
        sub_messages.append(_message(sid, 1, "assistant", rng.choice(text.replies)))
        sub.write_text(_dumps(_messages_file(f"{sid}__{agent}", sub_messages, ended)))
        rows.append(
            (
                f"{sid}__{agent}",
                pid,
                _iso(start + 5_000),
                _iso(ended),
                0,
                "completed",
                cwd,
                cwd,
                sid,
                "lead",
                agent,
                1,
                sub_messages[0]["content"][0]["text"],
                None,
                str(sub),
                _iso(ended),
            )
        )
    return rows


def _store(path: Path, rows: list[tuple[Any, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_DDL)
        with conn:
            conn.executemany(_INSERT, rows)
    finally:
        conn.close()


def _turn(role: str, *texts: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": t} for t in texts]}


def _message(sid: str, n: int, role: str, body: str) -> dict[str, Any]:
    return {"id": f"msg_{sid[-5:]}_{n}", "role": role, "content": [{"type": "text", "text": body}]}


def _messages_file(sid: str, messages: list[dict[str, Any]], updated: int) -> dict[str, Any]:
    origin = {"source": "vscode", "mode": "user", "sessionId": sid}
    return {
        "version": 1,
        "updated_at": _iso(updated),
        "agent": "lead",
        "sessionId": sid,
        "origin": origin,
        "messages": messages,
    }


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
