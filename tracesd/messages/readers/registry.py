"""Every agent's message reader, by agent id (each a port of the real Traces CLI's own)."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.amp import AmpReader
from tracesd.messages.readers.claude_code import ClaudeCodeReader
from tracesd.messages.readers.cline import ClineReader
from tracesd.messages.readers.codex import CodexReader
from tracesd.messages.readers.copilot import CopilotReader
from tracesd.messages.readers.cursor import CursorReader
from tracesd.messages.readers.gemini_cli import GeminiCliReader
from tracesd.messages.readers.opencode import OpenCodeReader
from tracesd.messages.readers.pi import PiReader

READERS: dict[str, Reader] = {
    "claude-code": ClaudeCodeReader(),
    "codex": CodexReader(),
    "gemini-cli": GeminiCliReader(),
    "opencode": OpenCodeReader(),
    "pi": PiReader(),
    "amp": AmpReader(),
    "cline": ClineReader(),
    "cursor": CursorReader(),
    "copilot": CopilotReader(),
}
