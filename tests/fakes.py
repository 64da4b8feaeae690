"""Hand-written fakes, only where the real thing cannot be controlled."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from tracesd.adapters import Adapter
from tracesd.ingest import Result


class ControlledIngest:
    """An ingest function whose runs can be held open, counted and made to fail.

    The dispatcher's contract is about timing and concurrency; a real ingest finishes too
    fast to observe "a second event while the first run is still going".
    """

    def __init__(self, result: Result | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.max_running = 0
        self.max_running_per_path = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.result = result or Result(captured=1)
        self.fail_with: Callable[[str], BaseException | None] = lambda path: None

    async def __call__(self, adapter: Adapter, path: str) -> Result:
        self.calls[path] += 1
        self.running[path] += 1
        self.max_running = max(self.max_running, sum(self.running.values()))
        self.max_running_per_path = max(self.max_running_per_path, self.running[path])
        try:
            await self.gate.wait()
            if (exc := self.fail_with(path)) is not None:
                raise exc
            return self.result
        finally:
            self.running[path] -= 1
