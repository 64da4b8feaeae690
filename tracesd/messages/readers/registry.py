"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.amp import AmpReader
from tracesd.messages.readers.cline import ClineReader

READERS: dict[str, Reader] = {}
READERS["cline"] = ClineReader()
READERS["amp"] = AmpReader()
