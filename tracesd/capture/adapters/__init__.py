"""Agent adapters: one module per agent, all with the same small surface.

An adapter only reads files. It knows where its agent keeps sessions (`roots`), which
paths below a root are sessions (`matches`, pure and cheap: it runs on the watcher thread
for every event), and how to read one (`parse`). No database, no network, no git.

Adding an agent: a new module with a class like the ones below, plus one line in
`_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tracesd.capture.adapters.amp import Amp
from tracesd.capture.adapters.claude_code import ClaudeCode
from tracesd.capture.adapters.cline import Cline
from tracesd.capture.adapters.codex import Codex
from tracesd.capture.adapters.copilot import Copilot
from tracesd.capture.adapters.cursor import Cursor
from tracesd.capture.adapters.gemini_cli import GeminiCli
from tracesd.capture.adapters.opencode import OpenCode
from tracesd.capture.adapters.pi import Pi
from tracesd.config import Config
from tracesd.models import Parsed


class Adapter(Protocol):
    agent_id: str

    def roots(self) -> tuple[str, ...]:
        """Absolute directories to watch; they need not exist yet."""
        ...

    def depth(self, root: str) -> int:
        """How deep below `root` session files can be: scans go no deeper, and a root of
        depth 1 is watched alone, without its subdirectories."""
        ...

    def matches(self, rel: str) -> bool:
        """Whether `rel` ('/'-separated, relative to one of the roots) is a session file."""
        ...

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        """The traces in one file ([] when it holds none yet) and the lines passed over.
        `known_directories`: where stored traces were made (from ingest; a hint for
        agents that name a project only by a hash or a slug of its path). Raises
        ParseError."""
        ...


_REGISTRY: dict[str, Callable[[Config], Adapter]] = {
    "claude-code": ClaudeCode,
    "codex": Codex,
    "gemini-cli": GeminiCli,
    "opencode": OpenCode,
    "pi": Pi,
    "amp": Amp,
    "cline": Cline,
    "cursor": Cursor,
    "copilot": Copilot,
}

SUPPORTED: tuple[str, ...] = tuple(_REGISTRY)


def build_adapters(config: Config) -> list[Adapter]:
    """One adapter per enabled agent that tracesd can read, in registry order."""
    enabled = set(config.agents.enabled)
    return [make(config) for agent, make in _REGISTRY.items() if agent in enabled]
