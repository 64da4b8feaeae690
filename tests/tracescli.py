"""The pinned real Traces CLI binary that `make traces-cli` installs, for the tests against it.

`traces_cli()` gives its path, or None; `skip_reason()` says why not and how to install it;
`require_traces_cli()` is the one-liner a test or fixture calls. The pin lives in the Makefile
(`TRACES_CLI_VERSION`) and is read from there, so there is one place to change it. With
`TRACESD_REQUIRE_TRACES_CLI=1` (for CI) a missing binary fails the test instead of skipping.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "@traces-sh/traces-linux-x64"
INSTALL_DIR = ROOT / ".cache" / "traces-cli"
PACKAGE_DIR = INSTALL_DIR / "node_modules" / PACKAGE
BINARY = PACKAGE_DIR / "bin" / "traces"
INSTALL_HINT = "run `make traces-cli` (needs npm and the npm registry)"
#: read once, at import: conftest's autouse fixture removes every TRACES* variable from the
#: environment before each test runs
REQUIRED = os.environ.get("TRACESD_REQUIRE_TRACES_CLI") == "1"


def pinned_version() -> str:
    """`TRACES_CLI_VERSION` from the Makefile."""
    text = (ROOT / "Makefile").read_text()
    found = re.search(r"^TRACES_CLI_VERSION\s*:?=\s*(\S+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("Makefile has no TRACES_CLI_VERSION")
    return found.group(1)


def skip_reason() -> str | None:
    """Why the pinned CLI cannot be used here (None when it can)."""
    where = f"{platform.system()}-{platform.machine()}"
    if where != "Linux-x86_64":
        return (
            f"the real Traces CLI {pinned_version()} is pinned for Linux x86_64 only, not {where}"
        )
    if not os.access(BINARY, os.X_OK):
        return f"the real Traces CLI {pinned_version()} is not installed: {INSTALL_HINT}"
    try:
        installed = json.loads((PACKAGE_DIR / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        installed = None
    pinned = pinned_version()
    if installed != pinned:
        return f"the installed Traces CLI is {installed}, the pin is {pinned}: {INSTALL_HINT}"
    return None


def traces_cli() -> Path | None:
    """The pinned real Traces CLI binary, or None when it is not installed (see skip_reason)."""
    return BINARY if skip_reason() is None else None


def require_traces_cli() -> Path:
    """The binary, else skip the test (fail it under TRACESD_REQUIRE_TRACES_CLI=1)."""
    reason = skip_reason()
    if reason is None:
        return BINARY
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)
