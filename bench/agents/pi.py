"""Pi sessions: `~/.pi/agent/sessions/--<cwd>--/<iso-ts>_<uuid>.jsonl`, as Pi writes them.

Each file opens with the `session` header, a model and a thinking-level change, the first
prompt, then rounds of assistant tool calls and tool results (bulk text spliced in from a
pool of pre-serialised strings), follow-up prompts, and sometimes a `/name`. One session in
twenty is a fork (`parentSession`): a new id and file that starts with a copy of its
parent's entries and goes on with a prompt of its own. Sizes are log-normal, 2 KB .. 400 KB.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.records import MARK, Clock, Lines, Pool

MIN_BYTES = 2 * 1024
MEDIAN_BYTES = 24 * 1024
MAX_BYTES = 400 * 1024
SIGMA = 1.1
FORK_SHARE = 0.05
SPREAD_DAYS = 120
_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
_MODEL = {"api": "anthropic-messages", "provider": "anthropic", "model": "claude-sonnet-4-5"}
_USAGE = {"input": 12, "output": 240, "cacheRead": 4096, "cacheWrite": 0, "totalTokens": 4348}


def generate(home: Path, cwds: Sequence[Path], count: int, seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    pool = Pool(rng)
    root = home / ".pi" / "agent" / "sessions"
    made: set[Path] = set()
    written: dict[str, str] = {}
    #: the last session that was not a fork: its file, entries and when it ended
    parent: tuple[Path, list[bytes], datetime] | None = None
    for i in range(count):
        cwd = str(cwds[i % len(cwds)])
        start = _EPOCH - timedelta(seconds=rng.uniform(0, SPREAD_DAYS * 86400))
        clock = Clock(start, rng)
        sid = clock.uuid()
        fork_of = parent if parent is not None and rng.random() < FORK_SHARE else None
        session = _Session(clock, pool, rng)
        if fork_of is not None:
            clock.now = fork_of[2] + timedelta(minutes=rng.uniform(1, 600))  # after its copy
            session.fork(sid, cwd, fork_of[0], fork_of[1])
        else:
            session.start(sid, cwd)
        size = int(
            min(MAX_BYTES, max(MIN_BYTES, rng.lognormvariate(math.log(MEDIAN_BYTES), SIGMA)))
        )
        session.grow(size)
        directory = root / ("--" + cwd.lstrip("/").replace("/", "-").replace(":", "-") + "--")
        if directory not in made:
            directory.mkdir(parents=True, exist_ok=True)
            made.add(directory)
        path = directory / f"{session.file_stamp}_{sid}.jsonl"
        with open(path, "wb") as f:
            f.writelines(session.lines.parts)
        written[sid] = cwd
        if fork_of is None:
            parent = (path, session.lines.parts[1:], clock.now)
    return written


class _Session:
    """The entries of one session file, linked by id/parentId like Pi's tree."""

    def __init__(self, clock: Clock, pool: Pool, rng: random.Random) -> None:
        self._clock = clock
        self._pool = pool
        self._rng = rng
        self._leaf: str | None = None
        self.lines = Lines()
        self.file_stamp = ""

    def start(self, sid: str, cwd: str) -> None:
        self._header(sid, cwd)
        self._entry("model_change", provider="anthropic", modelId="claude-sonnet-4-5")
        self._entry("thinking_level_change", thinkingLevel="off")
        self._prompt(self._rng.choice(self._pool.prompts))
        self._reply(self._pool.message())

    def fork(self, sid: str, cwd: str, path: Path, copied: list[bytes]) -> None:
        self._header(sid, cwd, parentSession=str(path))
        self.lines.parts.extend(copied)
        self.lines.size += sum(map(len, copied))
        last = json.loads(copied[-1]) if copied else {}
        self._leaf = last.get("id")
        self._prompt("Try the other approach instead: " + self._rng.choice(self._pool.prompts))
        self._reply(self._pool.message())

    def grow(self, size: int) -> None:
        while self.lines.size < size:
            roll = self._rng.random()
            if roll < 0.7:
                self._tool_round(self._pool.output(size - self.lines.size))
            elif roll < 0.85:
                self._reply(self._pool.message())
            elif roll < 0.97:
                self._prompt(self._rng.choice(self._pool.prompts))
            else:
                self._entry("session_info", name="Bench session")
        self._reply(b'"Done."')

    # -- entries -------------------------------------------------------------------

    def _header(self, sid: str, cwd: str, **extra: Any) -> None:
        stamp = self._clock.tick()
        self.file_stamp = stamp.replace(":", "-").replace(".", "-")
        header = {"type": "session", "version": 3, "id": sid, "timestamp": stamp, "cwd": cwd}
        self.lines.add({**header, **extra})

    def _prompt(self, text: str) -> None:
        self._message({"role": "user", "content": [{"type": "text", "text": text}]})

    def _reply(self, text: bytes) -> None:
        content = [{"type": "text", "text": MARK}]
        message = {"role": "assistant", "content": content, **_MODEL, "usage": _USAGE}
        self._message({**message, "stopReason": "stop"}, text)

    def _tool_round(self, output: bytes) -> None:
        call_id = "toolu_" + self._clock.uuid().replace("-", "")[:24]
        call = {"type": "toolCall", "id": call_id, "name": "bash", "arguments": {"command": "make"}}
        message = {"role": "assistant", "content": [call], **_MODEL, "usage": _USAGE}
        self._message({**message, "stopReason": "toolUse"})
        result = {
            "role": "toolResult",
            "toolCallId": call_id,
            "toolName": "bash",
            "content": [{"type": "text", "text": MARK}],
            "isError": False,
        }
        self._message(result, output)

    def _message(self, message: dict[str, Any], blob: bytes = b"") -> None:
        stamp = self._clock.tick()
        message = {**message, "timestamp": int(self._clock.now.timestamp() * 1000)}
        self._entry("message", blob, stamp, message=message)

    def _entry(self, kind: str, blob: bytes = b"", stamp: str = "", **fields: Any) -> None:
        entry_id = f"{self._rng.getrandbits(32):08x}"
        stamp = stamp or self._clock.tick()
        record = {"type": kind, "id": entry_id, "parentId": self._leaf, "timestamp": stamp}
        self.lines.add({**record, **fields}, blob)
        self._leaf = entry_id
