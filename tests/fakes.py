"""Hand-written fakes, only where the real thing cannot be controlled."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

from tracesd.capture.ingest import Item, Result


class ControlledIngest:
    """A batch ingest function whose runs can be held open, counted and made to fail.

    The dispatcher's contract is about timing and concurrency; a real ingest finishes too
    fast to observe "a second event while the first run is still going".
    """

    def __init__(self, result: Result | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.batches: list[list[str]] = []
        self.running: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.max_running_per_path = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.result = result or Result(captured=1)
        self.result_for: Callable[[str], Result] = lambda path: self.result
        self.fail_with: Callable[[str], BaseException | None] = lambda path: None

    async def __call__(self, items: Sequence[Item]) -> list[Result]:
        paths = [item.path for item in items]
        self.batches.append(paths)
        self.calls.update(paths)
        self.running.update(paths)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.max_running_per_path = max(self.max_running_per_path, *self.running.values())
        try:
            await self.gate.wait()
            for path in paths:
                if (exc := self.fail_with(path)) is not None:
                    raise exc
            return [self.result_for(path) for path in paths]
        finally:
            self.active -= 1
            self.running.subtract(paths)
