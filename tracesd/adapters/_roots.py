"""Where agents keep their sessions: config override first, then the agent's own env var."""

from __future__ import annotations

import os

from tracesd.config import Config


def resolve(config: Config, agent_id: str, defaults: list[str]) -> tuple[str, ...]:
    """The roots of one agent: the `[agents.roots]` override, else `defaults`."""
    override = config.agents.roots.get(agent_id)
    paths = [str(override)] if override is not None else defaults
    return tuple(dict.fromkeys(os.path.normpath(p) for p in paths))
