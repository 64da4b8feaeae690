"""A session's events in the CLI's reading order, one message at a time.

Amp's and Cline's parsers number their events the same way: `order` counts from 1 across the
session, each message takes the next key of its role from one counter (`<role>:<id or n>`),
and the part keys count afresh within each message. `Sequence` keeps that numbering; a
parser subclasses it and calls `begin` per message, `add` (or `add_result`) per event.
"""

from __future__ import annotations

from typing import Any

from tracesd.messages import keys
from tracesd.messages.event import Event, Kind


class Sequence:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.order = 1
        self.messages = keys.Counter()
        # the message being read
        self.at: int | float = 0
        self.message_key = ""
        self.parts = keys.Counter()

    def begin(self, kind: str, native: str | None, at: int | float) -> None:
        """The next message: its key, and the time its events carry."""
        self.at = at
        self.message_key = self.messages(kind, native)
        self.parts = keys.Counter()

    def add(self, kind: Kind, part: str, native: str | None = None, **fields: Any) -> None:
        self.events.append(
            Event(
                kind=kind,
                order=self.order,
                timestamp=self.at,
                message_key=self.message_key,
                part_key=self.parts(part, native),
                **fields,
            )
        )
        self.order += 1

    def add_result(self, call_id: str, tool: str, output: str, *, failed: bool) -> None:
        """A tool's result, its part keyed by the call's id."""
        self.add(
            "tool_result",
            "tool_result",
            call_id,
            call_id=call_id,
            tool_name=tool,
            output=output,
            status="error" if failed else "success",
        )
