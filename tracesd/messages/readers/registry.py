"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.codex import CodexReader

READERS: dict[str, Reader] = {}
READERS["codex"] = CodexReader()
