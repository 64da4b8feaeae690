"""Where agents keep their sessions: config override first, then the agent's own env var.

The platform is read from PLATFORM, so tests can ask for macOS paths on Linux.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

PLATFORM = sys.platform


def resolve(config: Config, agent_id: str, defaults: list[str]) -> tuple[str, ...]:
    """The roots of one agent: the `[agents.roots]` override, else `defaults`."""
    override = config.agents.roots.get(agent_id)
    paths = [str(override)] if override is not None else defaults
    return tuple(dict.fromkeys(os.path.normpath(p) for p in paths))


def xdg_data_home(config: Config) -> Path:
    """`$XDG_DATA_HOME`, else `~/.local/share` (on macOS too: the agents that use it do)."""
    configured = config.environ.get("XDG_DATA_HOME", "")
    return Path(configured) if os.path.isabs(configured) else config.home / ".local" / "share"
