"""Token usage as the CLI's readers count it and where a message's usage goes.

Each agent's `map...TokenUsage` picks its own fields, but all of them take a count the same
way (`count`), and the readers that give a message's usage to one of its events give it to
the last event of the kinds that can carry it (`attach`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from tracesd.messages.event import Event
from tracesd.messages.readers import _js


def count(value: Any) -> int | None:
    """A non-negative finite number, floored; None (the CLI's `undefined`) for anything else."""
    if not _js.is_finite(value) or value < 0:
        return None
    floored: int = math.floor(value)
    return floored


def attach(events: list[Event], start: int, usage: dict[str, Any], kinds: Collection[str]) -> bool:
    """`usage` goes to the last event at or after `start` whose kind is in `kinds`; False
    when there is none."""
    for n in range(len(events) - 1, start - 1, -1):
        if events[n].kind in kinds:
            events[n] = replace(events[n], token_usage=usage)
            return True
    return False
