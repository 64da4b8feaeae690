"""Synthetic session content: pools of pre-serialised text and tool-output blobs, session
clocks and ids, JSONL line assembly with blobs spliced in, and Claude Code message chains."""

from __future__ import annotations

import bisect
import json
import math
import random
import string
import uuid
from datetime import datetime, timedelta
from typing import Any

LONG_LINE = 100 * 1024
#: share of tool results that are one long line, when the session has room for one
LONG_SHARE = 0.03
#: put this string in a record where Lines.add should splice the blob in
MARK = "@@blob@@"
_HOLE = json.dumps(MARK).encode()
_CODE_TOKENS = ("=", "(", ")", "{", "}", ":", "->", '"', "'", "#", "\t", "return", "def")


class Pool:
    """Pre-serialised JSON strings of code-like text, in the sizes sessions need."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        vocab = [
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(2000)
        ]
        self._vocab = vocab + list(_CODE_TOKENS) * 20
        self.prompts = [self._text(rng.randint(40, 300)).replace("\n", " ") for _ in range(256)]
        self.messages = [self._blob(int(math.exp(rng.uniform(5, 8)))) for _ in range(64)]
        self.outputs = sorted(
            (self._blob(int(math.exp(rng.uniform(6, 10.6)))) for _ in range(256)), key=len
        )
        self._output_sizes = [len(b) for b in self.outputs]
        self.long_outputs = [self._blob(rng.randint(LONG_LINE, 4 * LONG_LINE)) for _ in range(12)]
        self.instructions = [self._blob(rng.randint(6_000, 16_000)) for _ in range(8)]

    def output(self, room: int) -> bytes:
        """A tool output that fits in `room` (the smallest one if none does); sometimes a
        long one, when there is room for it."""
        if room > LONG_LINE and self._rng.random() < LONG_SHARE:
            return self._rng.choice(self.long_outputs)
        fitting = bisect.bisect_right(self._output_sizes, room)
        return self._rng.choice(self.outputs[: max(1, fitting)])

    def message(self) -> bytes:
        return self._rng.choice(self.messages)

    def _text(self, chars: int) -> str:
        words = self._rng.choices(self._vocab, k=chars // 5 + 1)
        rows = (" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
        return "\n".join(rows)[:chars]

    def _blob(self, chars: int) -> bytes:
        return json.dumps(self._text(chars)).encode()


class Clock:
    """Timestamps (a few seconds apart, as agents write them) and ids of one session."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self._rng = rng

    def tick(self) -> str:
        self.now += timedelta(seconds=self._rng.uniform(0.5, 30.0))
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.now.microsecond // 1000:03d}Z"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


class Lines:
    """The lines of one file, each a compact JSON record, optionally with a blob spliced in."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.long = 0

    def add(self, record: dict[str, Any], blob: bytes = b"") -> None:
        """Append `record`; the string `MARK` inside it is replaced by `blob` (JSON)."""
        line = json.dumps(record, separators=(",", ":")).encode()
        if blob:
            head, _, tail = line.partition(_HOLE)
            line = head + blob + tail
        self.parts.append(line + b"\n")
        self.size += len(line) + 1
        self.long += len(line) >= LONG_LINE


class ClaudeChain:
    """Claude Code records of one session, linked by parentUuid like the real ones."""

    def __init__(self, sid: str, cwd: str, branch: str, clock: Clock, lines: Lines) -> None:
        self._base = {"isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": sid}
        self._branch = branch
        self._clock = clock
        self._lines = lines
        self._parent: str | None = None

    def snapshot(self) -> None:
        """The bookkeeping record Claude Code writes first (no top-level timestamp)."""
        message_id = self._clock.uuid()
        snapshot = {
            "messageId": message_id,
            "trackedFileBackups": {},
            "timestamp": self._clock.tick(),
        }
        record = {"type": "file-history-snapshot", "messageId": message_id, "snapshot": snapshot}
        self._lines.add({**record, "isSnapshotUpdate": False})

    def prompt(self, text: str) -> None:
        self._record("user", {"role": "user", "content": text}, permissionMode="default")

    def reply(self, content: bytes) -> None:
        message = {
            "model": "claude-sonnet-4-5-20250929",
            "id": "msg_" + self._clock.uuid().replace("-", "")[:24],
            "type": "message",
            "role": "assistant",
            "content": MARK,
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 2048, "output_tokens": 41},
        }
        self._record("assistant", message, content)

    def tool_round(self, output: bytes) -> None:
        tool_id = "toolu_" + self._clock.uuid().replace("-", "")[:24]
        use = [{"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "make"}}]
        self.reply(json.dumps(use).encode())
        result = [{"tool_use_id": tool_id, "type": "tool_result", "content": MARK}]
        self._record("user", {"role": "user", "content": result}, output)

    def _record(self, kind: str, message: dict[str, Any], blob: bytes = b"", **extra: Any) -> None:
        uid = self._clock.uuid()
        record = {
            "parentUuid": self._parent,
            **self._base,
            "version": "2.1.240",
            "gitBranch": self._branch,
            "type": kind,
            "message": message,
            "uuid": uid,
            "timestamp": self._clock.tick(),
            **extra,
        }
        self._lines.add(record, blob)
        self._parent = uid
