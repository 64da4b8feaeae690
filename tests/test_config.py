"""Config: defaults from HOME/XDG, TOML, env, flags; errors name the key and the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.helpers import isolated_env, tracesd
from tracesd.config import KEYS, Config, load_config
from tracesd.errors import ConfigError
from tracesd.models import AGENT_IDS


def load(home: Path, toml: str | None = None, **env: str) -> Config:
    environ = isolated_env(home, **env)
    if toml is not None:
        path = home / ".config" / "tracesd" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(toml)
    return load_config(environ=environ)


def test_defaults_derive_from_home_and_xdg(home: Path) -> None:
    config = load_config(environ={"HOME": str(home), "PATH": "/bin"})
    assert config.storage.db_path == home / ".traces" / "traces.db"
    assert config.status.socket_path == home / ".traces" / "tracesd.sock"
    assert config.agents.enabled == AGENT_IDS
    assert config.capture.git_timeout_s == 2.0
    assert config.capture.rescan_interval_s == 3600
    assert not config.sync.enabled
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.source is None


def test_socket_defaults_to_xdg_runtime_dir(home: Path) -> None:
    config = load_config(environ={"HOME": str(home), "XDG_RUNTIME_DIR": "/run/user/7"})
    assert config.status.socket_path == Path("/run/user/7/tracesd/tracesd.sock")


def test_toml_values_are_read_and_paths_expanded(home: Path) -> None:
    config = load(
        home,
        """
        [storage]
        db_path = "~/data/$PROJ/t.db"
        [agents]
        enabled = ["codex"]
        [agents.roots]
        codex = "relative/sessions"
        [capture]
        exclude = ["~/private/**"]
        git_timeout_s = 1
        [sync]
        api_url = "http://127.0.0.1:8787/"
        batch_size = 500
        send_titles = false
        [log]
        level = "DEBUG"
        format = "json"
        """,
        PROJ="p1",
    )
    assert config.storage.db_path == home / "data" / "p1" / "t.db"
    assert config.agents.enabled == ("codex",)
    assert config.agents.roots["codex"] == home / ".config" / "tracesd" / "relative" / "sessions"
    assert config.capture.exclude == (f"{home}/private/**",)
    assert config.capture.git_timeout_s == 1.0
    assert config.sync.api_url == "http://127.0.0.1:8787"
    assert config.sync.batch_size == 500
    assert not config.sync.send_titles
    assert (config.log.level, config.log.format) == ("debug", "json")


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        ("[storage]\ndb_pth = 'x'\n", "storage.db_pth", "unknown key"),
        ("[bogus]\nx = 1\n", "bogus", "unknown section"),
        ("[capture]\ngit_timeout_s = 'fast'\n", "capture.git_timeout_s", "must be a number"),
        ("[capture]\ngit_timeout_s = true\n", "capture.git_timeout_s", "must be a number"),
        ("[capture]\ngit_timeout_s = -1\n", "capture.git_timeout_s", "must be between"),
        ("[sync]\nbatch_size = 501\n", "sync.batch_size", "between 1 and 500"),
        ("[sync]\nbatch_size = 1.5\n", "sync.batch_size", "must be an integer"),
        ("[sync]\nsend_titles = 'no'\n", "sync.send_titles", "true or false"),
        ("[sync]\napi_url = 'ftp://x'\n", "sync.api_url", "http"),
        ("[agents]\nenabled = ['claude']\n", "agents.enabled", "must be one of"),
        ("[agents]\nenabled = 'codex'\n", "agents.enabled", "must be a list"),
        ("[agents.roots]\nvim = '/x'\n", "agents.roots", "unknown agent id"),
        ("[log]\nlevel = 'loud'\n", "log.level", "must be one of"),
        ("storage = 3\n", "storage", "must be a table"),
    ],
)
def test_bad_config_names_key_and_file(home: Path, toml: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(home, toml)
    text = str(info.value)
    assert key in text
    assert message in text
    assert str(home / ".config" / "tracesd" / "config.toml") in text


def test_invalid_toml_names_the_file(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid TOML.*config\.toml"):
        load(home, "[storage\n")


def test_explicit_config_file_must_exist(home: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(home, TRACESD_CONFIG=str(home / "missing.toml"))


def test_api_key_from_env_or_file_and_never_in_repr(home: Path) -> None:
    config = load(home, TRACES_API_KEY="sk-env-secret")
    assert config.sync.api_key == "sk-env-secret"
    assert "sk-env-secret" not in repr(config)
    key_file = home / "key"
    key_file.write_text("sk-file-secret\n")
    config = load(home, f"[sync]\napi_key_file = '{key_file}'\n", TRACES_API_KEY="sk-env-secret")
    assert config.sync.api_key == "sk-file-secret"
    assert "sk-file-secret" not in repr(config)


def test_unreadable_api_key_file_is_a_config_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"sync\.api_key_file"):
        load(home, f"[sync]\napi_key_file = '{home}/nope'\n")


def test_cli_exits_2_naming_key_and_file(home: Path) -> None:
    """The user sees one line with the key and the file, and exit code 2."""
    bad = home / "bad.toml"
    bad.write_text("[capture]\ngit_timeout = 3\n")
    result = tracesd(home, "--config", str(bad), "list")
    assert result.returncode == 2
    assert "capture.git_timeout" in result.stderr
    assert str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # The flag works after the command name too.
    assert tracesd(home, "list", "--config", str(bad)).returncode == 2


def test_cli_usage_error_exits_2(home: Path) -> None:
    assert tracesd(home, "frobnicate").returncode == 2
    assert tracesd(home, "list", "--limit", "0").returncode == 2


def test_example_config_documents_every_key_with_its_default(home: Path) -> None:
    """config.example.toml loads, names every key the schema knows, and holds the defaults."""
    example = Path(__file__).parents[1] / "config.example.toml"
    text = example.read_text()
    parsed = tomllib.loads(text)
    for dotted in KEYS:
        section, key = dotted.split(".")
        assert key in parsed.get(section, {}) or f"# {key} =" in text, dotted
    env = isolated_env(home)
    from_example = load_config(config_path=str(example), environ=env)
    defaults = load_config(environ=env)
    for name in ("storage", "agents", "capture", "sync", "status", "log"):
        assert getattr(from_example, name) == getattr(defaults, name), name
