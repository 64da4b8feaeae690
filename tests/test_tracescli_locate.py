"""Where the Traces CLI's database is: the CLI's own rules (docs/traces-cli-0.6.31.md (a)),
row by row, and the same answers as the real CLI's `traces status` when it is installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.tracescli import require_traces_cli
from tracesd.config import load_config
from tracesd.tracescli.database import locate, watched_files

#: (what is set up, environment, files made under HOME, expected path; "H" is HOME)
ROWS: list[tuple[str, dict[str, str], list[str], str]] = [
    ("empty HOME", {}, [], "H/.local/share/traces/traces.db"),
    ("XDG_DATA_HOME", {"XDG_DATA_HOME": "H/xdg"}, [], "H/xdg/traces/traces.db"),
    ("empty XDG_DATA_HOME", {"XDG_DATA_HOME": ""}, [], "H/.local/share/traces/traces.db"),
    ("relative XDG_DATA_HOME", {"XDG_DATA_HOME": "rel"}, [], "rel/traces/traces.db"),
    ("only legacy events.db", {}, [".traces/events.db"], "H/.traces/events.db"),
    (
        "legacy traces.db and events.db",
        {},
        [".traces/events.db", ".traces/traces.db"],
        "H/.traces/traces.db",
    ),
    (
        "legacy wins over XDG_DATA_HOME",
        {"XDG_DATA_HOME": "H/xdg"},
        [".traces/traces.db"],
        "H/.traces/traces.db",
    ),
    ("legacy path is a directory", {}, [".traces/traces.db/"], "H/.traces/traces.db"),
    (
        "absolute TRACES_EVENTSTORE",
        {"TRACES_EVENTSTORE": "/tmp/i11r/abs.db"},
        [],
        "/tmp/i11r/abs.db",
    ),
    (
        "relative TRACES_EVENTSTORE",
        {"TRACES_EVENTSTORE": "sub/x.db"},
        [".traces/traces.db"],
        "H/.local/share/traces/sub/x.db",
    ),
    (
        "relative TRACES_EVENTSTORE and XDG_DATA_HOME",
        {"TRACES_EVENTSTORE": "x.db", "XDG_DATA_HOME": "H/xdg"},
        [],
        "H/xdg/traces/x.db",
    ),
    (
        "blank TRACES_EVENTSTORE",
        {"TRACES_EVENTSTORE": "  "},
        [".traces/events.db"],
        "H/.traces/events.db",
    ),
    (
        "TRACES_EVENTSTORE trimmed",
        {"TRACES_EVENTSTORE": " /tmp/i11r/sp.db "},
        [],
        "/tmp/i11r/sp.db",
    ),
    ("no ~ expansion", {"TRACES_EVENTSTORE": "~/x.db"}, [], "H/.local/share/traces/~/x.db"),
    (
        "production URL",
        {"TRACES_HTTP_URL": "https://actions.traces.com"},
        [".traces/traces.db"],
        "H/.traces/traces.db",
    ),
    (
        "production URL with a slash",
        {"TRACES_HTTP_URL": "https://actions.traces.com/"},
        [],
        "H/.local/share/traces/traces.db",
    ),
    (
        "production URL with two slashes",
        {"TRACES_HTTP_URL": "https://actions.traces.com//"},
        [".traces/traces.db"],
        "H/.local/share/traces/traces.7137e11c8669.db",
    ),
    (
        "no case folding",
        {"TRACES_HTTP_URL": "HTTPS://actions.traces.com"},
        [],
        "H/.local/share/traces/traces.f0735d350356.db",
    ),
    (
        "staging",
        {"TRACES_HTTP_URL": "https://greedy-caterpillar-947.convex.site"},
        [".traces/traces.db"],
        "H/.local/share/traces/traces-staging.db",
    ),
    (
        "other URL",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9"},
        [],
        "H/.local/share/traces/traces.59b7003c27a8.db",
    ),
    (
        "other URL, one slash stripped",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9/"},
        [],
        "H/.local/share/traces/traces.59b7003c27a8.db",
    ),
    (
        "other URL, only one slash stripped",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9//"},
        [],
        "H/.local/share/traces/traces.0aaac99222eb.db",
    ),
    (
        "other URL, no trim",
        {"TRACES_HTTP_URL": " http://127.0.0.1:9"},
        [],
        "H/.local/share/traces/traces.2270c19d56bd.db",
    ),
    (
        "empty URL is production",
        {"TRACES_HTTP_URL": ""},
        [".traces/events.db"],
        "H/.traces/events.db",
    ),
    (
        "other URL ignores the legacy file",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9"},
        [".traces/traces.db"],
        "H/.local/share/traces/traces.59b7003c27a8.db",
    ),
    (
        "other URL and XDG_DATA_HOME",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9", "XDG_DATA_HOME": "H/xdg"},
        [],
        "H/xdg/traces/traces.59b7003c27a8.db",
    ),
    (
        "other URL and TRACES_EVENTSTORE",
        {"TRACES_HTTP_URL": "http://127.0.0.1:9", "TRACES_EVENTSTORE": "/tmp/i11r/e.db"},
        [],
        "/tmp/i11r/e.db",
    ),
    (
        "TRACES_API_URL and TRACES_URL change nothing",
        {"TRACES_API_URL": "http://127.0.0.1:1", "TRACES_URL": "http://127.0.0.1:2"},
        [],
        "H/.local/share/traces/traces.db",
    ),
]


def _setup(home: Path, env: dict[str, str], files: list[str]) -> dict[str, str]:
    for name in files:
        path = home / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    return {k: v.replace("H/", f"{home}/") for k, v in env.items()}


@pytest.mark.parametrize(("setup", "env", "files", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_locate_follows_the_cli_rules(
    home: Path, setup: str, env: dict[str, str], files: list[str], expected: str
) -> None:
    environ = _setup(home, env, files)
    assert locate(environ, home, system="linux") == Path(expected.replace("H/", f"{home}/"))


def test_locate_on_macos_uses_application_support(home: Path) -> None:
    expected = home / "Library" / "Application Support" / "traces" / "traces.db"
    assert locate({"XDG_DATA_HOME": "/elsewhere"}, home, system="darwin") == expected


def test_watched_files_include_the_legacy_files_only_for_production(home: Path) -> None:
    default = home / ".local/share/traces/traces.db"
    legacy = (home / ".traces/traces.db", home / ".traces/events.db")
    assert watched_files({}, home, system="linux") == (*legacy, default)
    other = {"TRACES_HTTP_URL": "http://127.0.0.1:9"}
    assert watched_files(other, home, system="linux") == (
        home / ".local/share/traces/traces.59b7003c27a8.db",
    )


def test_traces_cli_config_defaults_and_override(home: Path) -> None:
    environ = {"HOME": str(home)}
    config = load_config(environ=environ)
    assert config.traces_cli.enabled is True
    assert config.traces_cli.db_path is None
    path = home / ".config" / "tracesd" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[traces_cli]\nenabled = false\ndb_path = "~/cli/t.db"\n')
    config = load_config(environ=environ)
    assert config.traces_cli.enabled is False
    assert config.traces_cli.db_path == home / "cli" / "t.db"


# ------------------------------------------------------------------- the real CLI


@pytest.mark.parametrize(("setup", "env", "files", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_locate_agrees_with_traces_status(
    tmp_path: Path, setup: str, env: dict[str, str], files: list[str], expected: str
) -> None:
    """Every row again, against the real CLI (temp HOME; run in HOME, so a relative path
    means the same to both)."""
    binary = require_traces_cli()
    home = tmp_path / "h"
    home.mkdir()
    env = {k: v.replace("/tmp/i11r/", f"{tmp_path}/") for k, v in env.items()}
    environ = _setup(home, env, files)
    run_env = {"PATH": os.defpath, "HOME": str(home), "TERM": "dumb", **environ}
    out = subprocess.run(
        [str(binary), "status"],
        env=run_env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"^\s*Path: (.*)$", out.stdout, re.MULTILINE)
    assert found is not None, out.stdout + out.stderr
    assert locate(environ, home, system="linux") == Path(found.group(1))
