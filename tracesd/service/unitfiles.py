"""The unit file and the LaunchAgent plist of `tracesd service`: pure text from the
templates shipped in `tracesd/service/units/` and the values of one install."""

from __future__ import annotations

import plistlib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from tracesd.errors import ServiceError

LAUNCHD_LABEL = "dev.tracesd"

_HEADER = (
    "# Written by `tracesd service install`; re-run it rather than editing this file.\n"
    "# Secrets do not belong here: put the API key in a file named by [sync] api_key_file.\n"
    "\n"
)


def render_unit(argv: Sequence[str], environment: Mapping[str, str]) -> str:
    """The systemd unit: the template with this ExecStart, then one Environment= per
    variable. The template's own header comment (how to install it by hand) is replaced."""
    template = _template("tracesd.service")
    body = template[template.index("\n[Unit]") + 1 :]
    lines: list[str] = []
    for line in body.splitlines():
        if line.startswith("ExecStart="):
            lines.append("ExecStart=" + " ".join(_unit_word(arg, dollar=True) for arg in argv))
            lines += [
                f"Environment={_unit_word(f'{name}={value}', dollar=False)}"
                for name, value in environment.items()
            ]
        else:
            lines.append(line)
    return _HEADER + "\n".join(lines) + "\n"


_UNIT_PLAIN = re.compile(r"[^\s\"'\\;]+")


def _unit_word(text: str, *, dollar: bool) -> str:
    """One word of a unit setting, escaped for systemd: `%` starts a specifier everywhere,
    `$` a variable in ExecStart=; quotes when there is whitespace, a quote or a backslash."""
    if any(ord(c) < 32 for c in text):
        raise ServiceError(f"cannot put a control character in a systemd unit: {text!r}")
    text = text.replace("%", "%%")
    if dollar:
        text = text.replace("$", "$$")
    if _UNIT_PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_plist(argv: Sequence[str], environment: Mapping[str, str], log_file: Path) -> str:
    """The LaunchAgent: the template's keys, with the program, the environment and the log
    file of this install (plistlib escapes every value)."""
    job: dict[str, Any] = plistlib.loads(_template(f"{LAUNCHD_LABEL}.plist").encode())
    job.update(
        ProgramArguments=list(argv),
        EnvironmentVariables=dict(environment),
        StandardOutPath=str(log_file),
        StandardErrorPath=str(log_file),
    )
    return plistlib.dumps(job, sort_keys=False).decode()


def _template(name: str) -> str:
    return resources.files("tracesd.service").joinpath("units", name).read_text(encoding="utf-8")
