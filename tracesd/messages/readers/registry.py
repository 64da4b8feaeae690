"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.codex import CodexReader
from tracesd.messages.readers.copilot import CopilotReader
from tracesd.messages.readers.gemini_cli import GeminiCliReader

READERS: dict[str, Reader] = {}
READERS["codex"] = CodexReader()
READERS["copilot"] = CopilotReader()
READERS["gemini-cli"] = GeminiCliReader()
