"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.claude_code import ClaudeCodeReader
from tracesd.messages.readers.pi import PiReader

READERS: dict[str, Reader] = {}
READERS["claude-code"] = ClaudeCodeReader()
READERS["pi"] = PiReader()
