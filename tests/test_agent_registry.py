"""An agent is one adapter module: the registry (`ADAPTERS`) is the only list of agents,
and everything that names agents follows it. Adding an agent without its fixture, its
tests or its declarations fails here."""

from __future__ import annotations

import dataclasses
import plistlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import AGENT_ENV_PREFIXES, fixture_home
from tests.test_adapters import EXPECTED
from tracesd.capture.adapters import ADAPTERS, AGENT_IDS, ENV_VARS, _roots
from tracesd.config import Config
from tracesd.errors import ConfigError
from tracesd.service import install as service

TESTS = Path(__file__).parent


class _Recorded(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def test_every_agent_has_fixture_sessions_that_the_adapter_tests_read(tmp_path: Path) -> None:
    """Each agent has sessions in tests/fixtures/agents/expected.json, on disk in the fixture
    HOME (the SQLite stores once its script built them); test_adapters reads each one."""
    home = fixture_home(tmp_path / "fixture-home")
    tested = {case["agent"] for case in EXPECTED}
    for adapter in ADAPTERS:
        cases = [c for c in EXPECTED if c["agent"] == adapter.agent_id]
        assert adapter.agent_id in tested, f"{adapter.agent_id}: no session in expected.json"
        for case in cases:
            path = home / case["path"].removeprefix("home/")
            assert path.is_file(), f"{adapter.agent_id}: {case['id']} has no fixture file"


def test_every_agent_is_tested() -> None:
    """By its own test module, or by the fixture cases every agent's sessions run through."""
    for adapter in ADAPTERS:
        module = TESTS / f"test_adapter_{adapter.__module__.rsplit('.', 1)[-1]}.py"
        cases = [c["id"] for c in EXPECTED if c["agent"] == adapter.agent_id]
        assert module.is_file() or cases, f"{adapter.agent_id}: no test module and no case"


def test_the_env_variables_an_adapter_declares_are_the_ones_it_reads(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding its roots, an adapter reads exactly the environment it declares (Linux,
    where the editors' roots read the most)."""
    monkeypatch.setattr(_roots, "PLATFORM", "linux")
    base = make_config()
    for adapter in ADAPTERS:
        environ = _Recorded(dict(base.environ))
        config = dataclasses.replace(base, environ=environ)
        adapter(config).roots()
        assert environ.read == set(adapter.env_vars), adapter.agent_id


def test_the_service_passes_every_declared_variable_on() -> None:
    environ = {name: f"/srv/alice/{name.lower()}" for name in ENV_VARS}
    unit = service.systemd_service(
        program=("/opt/tracesd/bin/tracesd",),
        config_path=None,
        home=Path("/home/alice"),
        environ={"HOME": "/home/alice", **environ},
    )
    plist = service.launchd_service(
        program=("/opt/tracesd/bin/tracesd",),
        config_path=None,
        home=Path("/Users/alice"),
        environ={"HOME": "/Users/alice", **environ},
        uid=501,
    )
    passed = plistlib.loads(plist.content.encode())["EnvironmentVariables"]
    for adapter in ADAPTERS:
        for name in adapter.env_vars:
            assert f"Environment={name}={environ[name]}\n" in unit.content, name
            assert passed[name] == environ[name], name


def test_tests_never_inherit_a_declared_variable() -> None:
    """conftest drops the developer's agent variables by prefix: each declared one has one."""
    assert [name for name in ENV_VARS if not name.startswith(AGENT_ENV_PREFIXES)] == []


def test_config_accepts_exactly_the_registered_agents(make_config: Callable[..., Config]) -> None:
    config = make_config(
        agents__enabled=list(reversed(AGENT_IDS)),
        agents__roots={agent: f"/r/{agent}" for agent in AGENT_IDS},
    )
    assert config.agents.enabled == tuple(reversed(AGENT_IDS))
    assert set(config.agents.roots) == set(AGENT_IDS)
    assert make_config().agents.enabled == AGENT_IDS
    with pytest.raises(ConfigError, match="unknown agent id 'nope'"):
        make_config(agents__roots={"nope": "/r"})
