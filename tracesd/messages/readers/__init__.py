"""Message readers: one per agent, each reading a session into the CLI's events.

A reader turns a trace's session into `Event`s exactly as the real Traces CLI 0.6.31 does
for that agent (its adapters' event code, ported), with the same order and source keys, so
the ids (tracesd.messages.ids) and the uploaded messages are the CLI's.

A reader follows a growing session: `read(trace, position)` returns the events past
`position` and the position to continue from. A reader of an append-only file (JSON lines)
reads only the bytes appended since `position.offset` and keeps what it needs from earlier
lines in `position.state` (JSON-able: counters, call ids, ...). A reader of a session kept
as one document or database re-reads it whole and says so (`Read.whole`); the follower then
keeps only the events that are new or changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracesd.messages.event import Event
from tracesd.models import Trace


@dataclass(frozen=True)
class Position:
    """Where a reader stopped in one session."""

    #: bytes of the source consumed (append-only sources; 0 for whole re-reads)
    offset: int = 0
    #: the reader's own JSON-able memory of what came before `offset`
    state: Mapping[str, Any] = field(default_factory=dict)
    #: identity of the file read (`st_dev:st_ino`), to notice a replaced file
    file: str = ""


@dataclass(frozen=True)
class Read:
    events: list[Event]
    position: Position
    #: True: `events` is the whole session (re-read), not only what came after `position`
    whole: bool = False
    #: True: there is more to read past `position` right now (a read is bounded in bytes)
    more: bool = False


class Unreadable(Exception):
    """The session cannot be read now (gone, locked, not the format expected)."""


class Reader(Protocol):
    def read(self, trace: Trace, position: Position) -> Read: ...


def reader_for(agent_id: str) -> Reader | None:
    """The message reader of an agent, or None when tracesd reads no messages for it."""
    from tracesd.messages.readers import registry

    return registry.READERS.get(agent_id)
