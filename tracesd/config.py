"""Configuration: defaults, then the TOML file, then the environment, then flags.

This is the only module that reads the process environment. Everything else gets a frozen
`Config`, so a test that points HOME at a temporary directory gets a fully isolated daemon.
"""

from __future__ import annotations

import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tracesd.capture.adapters import AGENT_IDS
from tracesd.configvalues import Invalid, Number, api_url, boolean, choice, string, type_name
from tracesd.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")
#: `[sync] scope`: "shared", only traces shared with the Traces CLI; "all", every trace
SYNC_SCOPES = ("shared", "all")
MAX_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class StorageConfig:
    db_path: Path
    #: where tracesd kept its database before it had its own (`~/.traces/traces.db`, the
    #: Traces CLI's legacy location): taken over at start when tracesd's (see `takeover`)
    legacy_path: Path


@dataclass(frozen=True, slots=True)
class TracesCliConfig:
    """The real Traces CLI's database (INTERFACE 5b): filled with captured git context."""

    enabled: bool = True
    #: None: found by the CLI's own rules (tracescli.locate)
    db_path: Path | None = None


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    enabled: tuple[str, ...]
    #: explicit per-agent root overrides; agents not listed use their own defaults
    roots: Mapping[str, Path]


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    #: glob patterns of working directories that are never captured (already expanded)
    exclude: tuple[str, ...] = ()
    git_timeout_s: float = 2.0
    rescan_interval_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class SyncConfig:
    api_url: str = ""
    api_key_file: Path | None = None
    api_key: str | None = field(default=None, repr=False)
    interval_s: float = 30.0
    batch_size: int = 100
    max_backoff_s: float = 60.0
    send_titles: bool = True
    scope: str = "shared"
    #: follow each synced trace's messages (never when send_titles is off)
    messages: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.api_url)

    @property
    def follows_messages(self) -> bool:
        """Messages are uploaded: asked for, and titles may leave the machine."""
        return self.enabled and self.messages and self.send_titles

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"SyncConfig(api_url={self.api_url!r}, api_key_file={self.api_key_file!r}, "
            f"api_key={key}, interval_s={self.interval_s}, batch_size={self.batch_size}, "
            f"max_backoff_s={self.max_backoff_s}, send_titles={self.send_titles}, "
            f"scope={self.scope!r}, messages={self.messages})"
        )


@dataclass(frozen=True, slots=True)
class StatusConfig:
    socket_path: Path


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The reference API server (`tracesd server`); tokens come from TRACESD_SERVER_TOKENS."""

    db_path: Path
    tokens: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"ServerConfig(db_path={self.db_path!r}, tokens=<{len(self.tokens)} hidden>)"


@dataclass(frozen=True, slots=True)
class Config:
    storage: StorageConfig
    traces_cli: TracesCliConfig
    agents: AgentsConfig
    capture: CaptureConfig
    sync: SyncConfig
    status: StatusConfig
    log: LogConfig
    server: ServerConfig
    #: the user's home directory (from $HOME)
    home: Path
    #: a snapshot of the environment, for adapters that honour agent env vars
    environ: Mapping[str, str] = field(repr=False)
    #: the config file that was read, if any
    source: Path | None = None

    def env_path(self, name: str) -> Path | None:
        """An environment variable as an expanded path, or None when unset or empty."""
        value = self.environ.get(name, "")
        return self.expand(value) if value else None

    def expand(self, value: str) -> Path:
        """`~` and `$VAR` in a path, expanded from this config's environment."""
        return _expand_path(value, self.environ, self.home, None)


# ---------------------------------------------------------------------------- loading


def load_config(
    *,
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config. Raises ConfigError naming the key and the file."""
    env = MappingProxyType(dict(os.environ if environ is None else environ))
    home = _home(env)

    explicit = config_path or env.get("TRACESD_CONFIG") or None
    if explicit:
        path: Path | None = _expand_path(explicit, env, home, None)
        assert path is not None
        if not path.is_file():
            raise ConfigError("config file not found", path=path)
    else:
        xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        candidate = Path(xdg) / "tracesd" / "config.toml"
        path = candidate if candidate.is_file() else None

    values: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    if path is not None:
        raw = _read_toml(path)
        _merge(values, raw, env=env, home=home, path=path, base=path.parent)
    if overrides:
        nested: dict[str, Any] = {}
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            nested.setdefault(section, {})[key] = value
        _merge(values, nested, env=env, home=home, path=None, base=Path.cwd())

    return _build(values, env=env, home=home, path=path)


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    if home:
        return Path(home)
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except ValueError as exc:  # TOMLDecodeError, or an integer of thousands of digits
        raise ConfigError(f"invalid TOML ({exc})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file ({exc.strerror})", path=path) from None


_Validator = Callable[[Any, "_Ctx"], Any]


@dataclass(frozen=True, slots=True)
class _Ctx:
    env: Mapping[str, str]
    home: Path
    base: Path


def _merge(
    values: dict[str, dict[str, Any]],
    raw: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    home: Path,
    path: Path | None,
    base: Path,
) -> None:
    ctx = _Ctx(env, home, base)
    for section, table in raw.items():
        if section not in _SCHEMA:
            raise ConfigError("unknown section", key=section, path=path)
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", key=section, path=path)
        for key, value in table.items():
            dotted = f"{section}.{key}"
            validator = _SCHEMA[section].get(key)
            if validator is None:
                raise ConfigError("unknown key", key=dotted, path=path)
            try:
                values[section][key] = validator(value, ctx)
            except Invalid as exc:
                raise ConfigError(str(exc), key=dotted, path=path) from None


def _build(
    values: dict[str, dict[str, Any]], *, env: Mapping[str, str], home: Path, path: Path | None
) -> Config:
    storage = values["storage"]
    agents = values["agents"]
    capture = values["capture"]
    sync = values["sync"]
    status = values["status"]
    log = values["log"]
    traces_cli = values["traces_cli"]

    api_key_file: Path | None = sync.get("api_key_file")
    api_key = env.get("TRACES_API_KEY") or None
    if api_key_file is not None:
        try:
            api_key = api_key_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(
                f"cannot read API key file {api_key_file} ({exc.strerror})",
                key="sync.api_key_file",
                path=path,
            ) from None
    if api_key is not None and not _TOKEN.fullmatch(api_key):
        # It would go into an HTTP header, where aiohttp refuses it at the first request.
        raise ConfigError(
            "the API key holds a space, a control or a non-ASCII character",
            key="sync.api_key_file" if api_key_file is not None else "TRACES_API_KEY",
            path=path if api_key_file is not None else None,
        )

    runtime = env.get("XDG_RUNTIME_DIR")
    state_home = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
    default_socket = (Path(runtime) if runtime else state_home) / "tracesd" / "tracesd.sock"
    data_home = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    legacy = home / ".traces" / "traces.db"
    db_path: Path = storage.get("db_path") or data_home / "tracesd" / "traces.db"
    if os.path.abspath(db_path) == os.path.abspath(legacy):
        raise ConfigError(
            f"{db_path} is the Traces CLI's legacy database (the CLI adopts that file, and"
            " migrates and prunes it); remove the key: tracesd keeps its own at"
            f" {data_home / 'tracesd' / 'traces.db'} and takes an earlier one over from there",
            key="storage.db_path",
            path=path,
        )
    return Config(
        storage=StorageConfig(db_path=db_path, legacy_path=legacy),
        traces_cli=TracesCliConfig(**traces_cli),
        agents=AgentsConfig(
            enabled=agents.get("enabled", AGENT_IDS),
            roots=MappingProxyType(agents.get("roots", {})),
        ),
        capture=CaptureConfig(**capture),
        sync=SyncConfig(api_key=api_key, **sync),
        status=StatusConfig(socket_path=status.get("socket_path") or default_socket),
        log=LogConfig(**log),
        server=ServerConfig(
            db_path=data_home / "tracesd" / "server.db",
            tokens=tuple(
                t.strip() for t in env.get("TRACESD_SERVER_TOKENS", "").split(",") if t.strip()
            ),
        ),
        home=home,
        environ=env,
        source=path,
    )


# ------------------------------------------------------------------------- validators

#: what an API key may hold: visible ASCII (it travels in the Authorization header)
_TOKEN = re.compile(r"[\x21-\x7e]+")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_path(value: str, env: Mapping[str, str], home: Path, base: Path | None) -> Path:
    """`~` and `$VAR` expanded from the given environment; relative paths against `base`."""
    value = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)
    if value == "~" or value.startswith("~/"):
        value = str(home) + value[1:]
    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _path(value: Any, ctx: _Ctx) -> Path | None:
    text = string(value)
    return _expand_path(text, ctx.env, ctx.home, ctx.base) if text else None


def _agent_list(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(f"must be a list of agent ids, got {type_name(value)}")
    check = choice(AGENT_IDS)
    return tuple(dict.fromkeys(check(item, ctx) for item in value))


def _agent_roots(value: Any, ctx: _Ctx) -> dict[str, Path]:
    if not isinstance(value, Mapping):
        raise Invalid(f"must be a table of agent id = path, got {type_name(value)}")
    roots: dict[str, Path] = {}
    for agent, root in value.items():
        if agent not in AGENT_IDS:
            raise Invalid(f"unknown agent id {agent!r}; known: {', '.join(AGENT_IDS)}")
        path = _path(root, ctx)
        if path is not None:
            roots[agent] = path
    return roots


def _globs(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"must be a list of glob patterns, got {type_name(value)}")
    return tuple(str(_expand_path(v, ctx.env, ctx.home, None)) for v in value if v)


_SCHEMA: dict[str, dict[str, _Validator]] = {
    "storage": {"db_path": _path},
    "traces_cli": {"enabled": boolean, "db_path": _path},
    "agents": {"enabled": _agent_list, "roots": _agent_roots},
    "capture": {
        "exclude": _globs,
        "git_timeout_s": Number(0.05, 600),
        "rescan_interval_s": Number(1, 7 * 86400),
    },
    "sync": {
        "api_url": api_url,
        "api_key_file": _path,
        "interval_s": Number(0.05, 86400),
        "batch_size": Number(1, MAX_BATCH_SIZE, integer=True),
        "max_backoff_s": Number(0.05, 86400),
        "send_titles": boolean,
        "scope": choice(SYNC_SCOPES),
        "messages": boolean,
    },
    "status": {"socket_path": _path},
    "log": {"level": choice(LOG_LEVELS), "format": choice(LOG_FORMATS)},
}

#: every config key, dotted (`capture.git_timeout_s`)
KEYS: tuple[str, ...] = tuple(f"{s}.{k}" for s, keys in _SCHEMA.items() for k in keys)
#: every numeric key with its range (each declared once, in _SCHEMA)
NUMBERS: dict[str, Number] = {
    f"{s}.{k}": v for s, keys in _SCHEMA.items() for k, v in keys.items() if isinstance(v, Number)
}
