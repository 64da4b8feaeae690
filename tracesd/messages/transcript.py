"""A session's whole message list, read in one go: what the CLI's `share` uploads for it.

The follower (tracesd.sync.follow) reads sessions piece by piece; this reads one whole,
with the same readers and naming, for `tracesd` commands and to check a reader against the
real CLI.
"""

from __future__ import annotations

from typing import Any

from tracesd.messages import identity
from tracesd.messages.event import as_message, bounded
from tracesd.messages.readers import Position, Unreadable, reader_for
from tracesd.models import Trace


def messages(trace: Trace) -> list[dict[str, Any]]:
    """The batch entries of every event of `trace`'s session, in the order read."""
    reader = reader_for(trace.agent_id)
    if reader is None:
        raise Unreadable(f"no message reader for {trace.agent_id}")
    known: dict[tuple[str, str], list[identity.Known]] = {}
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    position = Position()
    while True:
        read = reader.read(trace, position)
        if read.whole:
            known.clear()
            latest.clear()
        for event in read.events:
            group = known.setdefault(identity.group(event), [])
            named = identity.name(trace.id, event, group)
            if named.verdict == "collapsed":
                continue
            if named.verdict == "new":
                group.append(identity.Known(named.event.part_key, event.signature(), event.order))
            slot = (*identity.group(event), event.order)
            entry = as_message(
                trace.agent_id, bounded(named.event), named.message_id, named.part_id
            )
            latest[slot] = entry
        position = read.position
        if not read.more:
            return list(latest.values())
