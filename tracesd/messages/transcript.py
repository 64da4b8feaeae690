"""A session's whole message list, read in one go: what the CLI's `share` uploads for it.

The follower (tracesd.sync.follow) reads sessions piece by piece; this reads one whole,
with the same readers and naming, for `tracesd` commands and to check a reader against the
real CLI.
"""

from __future__ import annotations

from typing import Any

from tracesd.messages import identity
from tracesd.messages.event import as_message, bounded
from tracesd.messages.readers import Position, Read, Unreadable, reader_for
from tracesd.models import Trace


class Transcript:
    """A session's batch entries as reads of it add up: after each `add`, `entries` is what
    a server that took every entry so far holds (a re-read event replaces its entry)."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self._known: dict[tuple[str, str], list[identity.Known]] = {}
        self._latest: dict[tuple[str, str, int], dict[str, Any]] = {}

    def add(self, read: Read) -> None:
        if read.whole:
            self._known.clear()
            self._latest.clear()
        for event in read.events:
            group = self._known.setdefault(identity.group(event), [])
            named = identity.name(self._trace.id, event, group)
            if named.verdict == "collapsed":
                continue
            if named.verdict == "new":
                group.append(identity.Known(named.event.part_key, event.signature(), event.order))
            self._latest[(*identity.group(event), event.order)] = as_message(
                self._trace.agent_id, bounded(named.event), named.message_id, named.part_id
            )

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self._latest.values())


def messages(trace: Trace) -> list[dict[str, Any]]:
    """The batch entries of every event of `trace`'s session, in the order read."""
    reader = reader_for(trace.agent_id)
    if reader is None:
        raise Unreadable(f"no message reader for {trace.agent_id}")
    transcript = Transcript(trace)
    position = Position()
    while True:
        read = reader.read(trace, position)
        transcript.add(read)
        position = read.position
        if not read.more:
            return transcript.entries
