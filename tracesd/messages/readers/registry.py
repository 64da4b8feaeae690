"""Every agent's message reader, by agent id."""

from __future__ import annotations

from tracesd.messages.readers import Reader
from tracesd.messages.readers.cursor import CursorReader
from tracesd.messages.readers.opencode import OpenCodeReader

READERS: dict[str, Reader] = {}
READERS["cursor"] = CursorReader()
READERS["opencode"] = OpenCodeReader()
