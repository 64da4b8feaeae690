"""Naming events: the CLI's rule for two events under the same source keys (`H2e`).

A second event under a message key and part key already used either is the same event read
twice (the same kind, time and content: it collapses into the first) or a different one (its
part key gets `#1`, `#2`, ...). The CLI applies the rule to a whole session at once; tracesd
reads a session piece by piece, so it keeps what it has named (`Known`) and applies the rule
to each new event against that. An event read again at the same `order` is the same event,
possibly changed (a session kept as one document is re-read whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tracesd.messages import ids
from tracesd.messages.event import Event


@dataclass(frozen=True)
class Known:
    """An event already named under one (message key, part key)."""

    part_key: str
    signature: str
    order: int


@dataclass(frozen=True)
class Named:
    verdict: Literal["new", "again", "collapsed"]
    #: the event with its final part key (`#n` added when needed)
    event: Event
    message_id: str
    part_id: str


def name(trace_id: str, event: Event, known: Sequence[Known]) -> Named:
    """Name `event`, given the events already named under its keys (in naming order)."""
    message_id = ids.message_id(trace_id, event.message_key)
    for earlier in known:
        if earlier.order == event.order:
            return _named("again", trace_id, event, message_id, earlier.part_key)
    signature = event.signature()
    for earlier in known:
        if earlier.signature == signature:
            return _named("collapsed", trace_id, event, message_id, earlier.part_key)
    base = event.part_key.strip()
    part_key = base if not known else f"{base}#{len(known)}"
    return _named("new", trace_id, event, message_id, part_key)


def group(event: Event) -> tuple[str, str]:
    """The keys the rule groups events by."""
    return event.message_key.strip(), event.part_key.strip()


def _named(
    verdict: Literal["new", "again", "collapsed"],
    trace_id: str,
    event: Event,
    message_id: str,
    part_key: str,
) -> Named:
    return Named(
        verdict,
        replace(event, part_key=part_key),
        message_id,
        ids.part_id(trace_id, message_id, part_key),
    )
