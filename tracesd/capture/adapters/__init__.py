"""Agent adapters: one module per agent, all with the same small surface.

An adapter only reads files. It knows where its agent keeps sessions (`roots`), which
paths below a root are sessions (`matches`, pure and cheap: it runs on the watcher thread
for every event), and how to read one (`parse`). No database, no network, no git.

An agent is one module here: its class declares the agent's id (`agent_id`, as the Traces
CLI and API name it), the environment variables it reads to find its roots (`env_vars`),
and the roots themselves (`roots()`, which `[agents.roots] <id>` overrides). Everything
else that names agents derives from `ADAPTERS`: the ids config accepts, the agents built
and their order (status, doctor, `tracesd list --agent`), the variables the service passes
through. Adding an agent: its module, one line in `ADAPTERS`, its fixture sessions in
tests/fixtures/agents (expected.json) and its tests; tests/test_agent_registry.py checks
the fixture and the declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tracesd.capture.adapters.amp import Amp
from tracesd.capture.adapters.claude_code import ClaudeCode
from tracesd.capture.adapters.cline import Cline
from tracesd.capture.adapters.codex import Codex
from tracesd.capture.adapters.copilot import Copilot
from tracesd.capture.adapters.cursor import Cursor
from tracesd.capture.adapters.gemini_cli import GeminiCli
from tracesd.capture.adapters.opencode import OpenCode
from tracesd.capture.adapters.pi import Pi
from tracesd.models import Parsed

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config


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


class AdapterClass(Protocol):
    """An adapter's class: what it declares before any config is read, and its constructor."""

    agent_id: str

    @property
    def env_vars(self) -> tuple[str, ...]:
        """The environment variables it reads to find its roots (the service passes them
        on to the daemon it installs)."""
        ...

    def __call__(self, config: Config) -> Adapter: ...


#: every agent tracesd reads, in the order status, doctor and the docs list them
ADAPTERS: tuple[AdapterClass, ...] = (
    ClaudeCode,
    Codex,
    GeminiCli,
    OpenCode,
    Pi,
    Amp,
    Cline,
    Cursor,
    Copilot,
)

#: agent ids as the Traces CLI and API name them (INTERFACE section 5)
AGENT_IDS: tuple[str, ...] = tuple(adapter.agent_id for adapter in ADAPTERS)
#: every environment variable some adapter reads, in registry order
ENV_VARS: tuple[str, ...] = tuple(dict.fromkeys(v for a in ADAPTERS for v in a.env_vars))


def build_adapters(config: Config) -> list[Adapter]:
    """One adapter per enabled agent that tracesd can read, in registry order."""
    enabled = set(config.agents.enabled)
    return [make(config) for make in ADAPTERS if make.agent_id in enabled]
