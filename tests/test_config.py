"""Config: defaults from HOME/XDG, TOML, env, flags; errors name the key and the file."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import db_path, isolated_env, tracesd
from tracesd.capture.adapters import AGENT_IDS
from tracesd.config import KEYS, NUMBERS, Config, load_config
from tracesd.errors import ConfigError


def load(home: Path, toml: str | None = None, **env: str) -> Config:
    environ = isolated_env(home, **env)
    if toml is not None:
        path = home / ".config" / "tracesd" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(toml)
    return load_config(environ=environ)


def test_defaults_derive_from_home_and_xdg(home: Path) -> None:
    config = load_config(environ={"HOME": str(home), "PATH": "/bin"})
    assert config.storage.db_path == db_path(home)
    assert config.status.socket_path == home / ".local" / "state" / "tracesd" / "tracesd.sock"
    assert config.agents.enabled == AGENT_IDS
    assert config.capture.git_timeout_s == 2.0
    assert config.capture.rescan_interval_s == 3600
    assert not config.sync.enabled
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.source is None


def test_database_and_socket_follow_xdg_data_and_state_home_never_dot_traces(home: Path) -> None:
    env = {"HOME": str(home), "XDG_DATA_HOME": "/d", "XDG_STATE_HOME": "/s"}
    config = load_config(environ=env)
    assert config.storage.db_path == Path("/d/tracesd/traces.db")
    assert config.status.socket_path == Path("/s/tracesd/tracesd.sock")
    empty = load_config(environ={**env, "XDG_DATA_HOME": "", "XDG_STATE_HOME": ""})
    assert empty.storage.db_path == home / ".local" / "share" / "tracesd" / "traces.db"
    assert empty.status.socket_path == home / ".local" / "state" / "tracesd" / "tracesd.sock"
    assert config.storage.legacy_path == home / ".traces" / "traces.db"


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
    for name in ("storage", "traces_cli", "agents", "capture", "sync", "status", "log"):
        assert getattr(from_example, name) == getattr(defaults, name), name


# ------------------------------------------------------------- numbers (issue 10, 2.11)


def _bad_numbers() -> list[Any]:
    """Every numeric key x every kind of nonsense TOML can spell."""
    cases = []
    for dotted, rule in NUMBERS.items():
        nonsense = {
            "nan": "nan",
            "inf": "inf",
            "-inf": "-inf",
            "negative": "-1",
            "absurdly large": "1e300" if not rule.integer else "1" + "0" * 30,
            "bool": "true",
            "string": '"5"',
        }
        if rule.minimum > 0:
            nonsense["zero"] = "0"
        cases += [
            pytest.param(dotted, text, id=f"{dotted}={name}") for name, text in nonsense.items()
        ]
    return cases


@pytest.mark.parametrize(("dotted", "text"), _bad_numbers())
def test_every_number_is_finite_and_in_its_range_else_the_key_is_named(
    home: Path, dotted: str, text: str
) -> None:
    section, key = dotted.split(".")
    with pytest.raises(ConfigError) as info:
        load(home, f"[{section}]\n{key} = {text}\n")
    assert info.value.key == dotted
    assert str(home / ".config" / "tracesd" / "config.toml") in str(info.value)


@pytest.mark.parametrize("dotted", NUMBERS)
def test_the_bounds_of_every_range_are_accepted(home: Path, dotted: str) -> None:
    section, key = dotted.split(".")
    rule = NUMBERS[dotted]
    for bound in (rule.minimum, rule.maximum):
        text = str(int(bound)) if rule.integer else repr(float(bound))
        config = load(home, f"[{section}]\n{key} = {text}\n")
        assert getattr(getattr(config, section), key) == bound


def test_the_example_config_states_every_range() -> None:
    text = (Path(__file__).parents[1] / "config.example.toml").read_text()
    for dotted, rule in NUMBERS.items():
        low, high = (f"{b:g}" for b in (rule.minimum, rule.maximum))
        assert f"from {low} to {high}" in text.lower().replace("\n# ", " "), dotted


def test_an_integer_of_thousands_of_digits_is_invalid_toml_not_a_traceback(home: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(home, "[sync]\nbatch_size = " + "1" * 5000 + "\n")


def _run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A tracesd command that must give up at once (a daemon that starts is a failure)."""
    try:
        done: subprocess.CompletedProcess[str] = tracesd(home, *args, env=env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"tracesd {args} did not exit: {exc.stdout!r} {exc.stderr!r}"
        ) from None
    return done


@pytest.mark.parametrize(
    "dotted", ["sync.interval_s", "sync.max_backoff_s", "capture.git_timeout_s"]
)
def test_run_refuses_nan_with_exit_2_naming_the_key(home: Path, dotted: str) -> None:
    section, key = dotted.split(".")
    config = home / "nan.toml"
    sync_on = 'api_url = "http://127.0.0.1:9"\n' if section == "sync" else ""
    config.write_text(f"[{section}]\n{sync_on}{key} = nan\n")
    result = _run(home, "run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert dotted in result.stderr
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------- api_url (issue 10, 2.4)

SECRET = "sk-url-SECRET-7731"


@pytest.mark.parametrize(
    "url",
    [
        f"http://u:{SECRET}@127.0.0.1:9",
        f"https://:{SECRET}@traces.example.com",
        f"http://{SECRET}@traces.example.com/api",
        f"http://traces.example.com/?token={SECRET}",
        f"http://traces.example.com/#{SECRET}",
        f"http://traces.example.com?{SECRET}",
        f"ftp://traces.example.com/{SECRET}",
        f"javascript:{SECRET}",
        f"traces.example.com/{SECRET}",
        f"http://traces.example.com:99999/{SECRET}",
        f"http://[::1/{SECRET}",
        f"http://traces example.com/{SECRET}",
        f"http://traces.example.com/\x1b[2J{SECRET}",
        "http://",
        "http://:8787",
    ],
)
def test_an_api_url_that_is_not_a_plain_base_url_is_refused_without_echoing_it(
    home: Path, url: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(home, f"[sync]\napi_url = {json.dumps(url)}\n")
    assert info.value.key == "sync.api_url"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("http://127.0.0.1:8787/", "http://127.0.0.1:8787"),
        ("https://traces.example.com/api/", "https://traces.example.com/api"),
        ("http://[::1]:8787", "http://[::1]:8787"),
        ("HTTPS://Traces.Example.com", "HTTPS://Traces.Example.com"),
    ],
)
def test_a_plain_base_url_is_kept(home: Path, url: str, kept: str) -> None:
    assert load(home, f"[sync]\napi_url = {json.dumps(url)}\n").sync.api_url == kept


@pytest.mark.parametrize("command", [["run"], ["scan"], ["doctor"], ["doctor", "--json"]])
def test_credentials_in_api_url_stop_every_command_with_exit_2_and_never_show(
    home: Path, command: list[str]
) -> None:
    """With TRACES_API_KEY set too (which made the first sync crash) and without it."""
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[sync]\napi_url = "http://user:{SECRET}@127.0.0.1:9"\n')
    for extra in ({"TRACES_API_KEY": "sk-env-key"}, {}):
        result = _run(home, *command, env=isolated_env(home, **extra))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "sync.api_url" in result.stderr
        assert str(config) in result.stderr
        assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("key", ["sk-a\nb", "sk a", "sk-\x1b[2J", "sk-\u00e9t\u00e9", "sk-\x00"])
def test_an_api_key_that_cannot_be_a_header_is_a_config_error_not_a_crash(
    home: Path, key: str
) -> None:
    """It would make aiohttp refuse the first sync request; named, never shown."""
    with pytest.raises(ConfigError) as info:
        load(home, TRACES_API_KEY=key)
    assert info.value.key == "TRACES_API_KEY"
    assert key not in str(info.value)
    key_file = home / "key"
    key_file.write_text(key + "\n")
    with pytest.raises(ConfigError) as info:
        load(home, f"[sync]\napi_key_file = '{key_file}'\n")
    assert info.value.key == "sync.api_key_file"
    assert key not in str(info.value)
