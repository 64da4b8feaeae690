"""Pi (`pi`): not read yet (a placeholder until its adapter lands)."""

from __future__ import annotations

from tracesd.config import Config
from tracesd.models import TraceMeta

AGENT_ID = "pi"


class Pi:
    agent_id = AGENT_ID

    def __init__(self, config: Config, hints: object = None) -> None:
        self._roots: tuple[str, ...] = ()

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 1

    def matches(self, rel: str) -> bool:
        return False

    def parse(self, path: str) -> list[TraceMeta]:
        return []
