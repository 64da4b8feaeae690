"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader

READERS: dict[str, Reader] = {}
