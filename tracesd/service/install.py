"""`tracesd service`: run the daemon as a systemd user service or a launchd LaunchAgent.

Two halves. Rendering is pure: the templates in `tracesd/service/units/` plus the running tracesd,
its config file and the installing shell's variables give a `Service`, which is the file to
write and the steps to install, uninstall and ask for status. Doing runs those steps with
`systemctl --user` or `launchctl`, after checking that the service manager answers; a
dry run only describes them.

The environment comes from `Config.environ` (besides it, this module reads only the uid,
the working directory and `sys.executable`), so tests point PATH at a fake `systemctl` and
HOME at a temporary directory without patching anything.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tracesd.capture.adapters import ENV_VARS
from tracesd.config import Config
from tracesd.errors import ServiceError
from tracesd.service.unitfiles import LAUNCHD_LABEL, render_plist, render_unit

UNIT_NAME = "tracesd.service"

#: tracesd's own variables: where its config, database and socket are
OWN_ENV = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TRACESD_CONFIG")
#: where the Traces CLI keeps its database (tracesd fills it: INTERFACE 5b)
TRACES_CLI_ENV = ("TRACES_EVENTSTORE", "TRACES_HTTP_URL")
#: Variables handed to the service as they were when installing, so it sees the same agent
#: roots and config as the user's shell: every one an adapter declares, then tracesd's and
#: the Traces CLI's. Never TRACES_API_KEY or another secret.
PASSTHROUGH: tuple[str, ...] = tuple(dict.fromkeys((*ENV_VARS, *OWN_ENV, *TRACES_CLI_ENV)))
#: launchd starts jobs without XDG_RUNTIME_DIR (systemd sets it to the same /run/user/<uid>
#: a login shell has); without it the daemon's socket would not be where `tracesd status`
#: from that shell looks.
LAUNCHD_EXTRA = ("XDG_RUNTIME_DIR",)
#: launchd's own PATH is /usr/bin:/bin:/usr/sbin:/sbin, which lacks Homebrew's git
FALLBACK_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"

#: how long one systemctl/launchctl call may take; `restart` of a Type=notify unit waits
#: for READY=1 (TimeoutStartSec, 90 s by default) after the old process stopped (30 s)
COMMAND_TIMEOUT_S = 180.0


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Run:
    argv: tuple[str, ...]
    #: expected to fail harmlessly (booting out a job that is not loaded)
    may_fail: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    path: Path
    content: str


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: Path


@dataclass(frozen=True, slots=True)
class Remove:
    path: Path


Step = Run | Write | MakeDir | Remove


@dataclass(frozen=True, slots=True)
class Service:
    """One platform's service for one tracesd: what install, uninstall and status do."""

    #: the name the manager knows it by (`tracesd.service`, `dev.tracesd`)
    name: str
    #: the unit file or plist
    path: Path
    content: str
    install: tuple[Step, ...]
    uninstall: tuple[Step, ...]
    status: Run
    #: read-only; succeeds only when the service manager can be reached
    probe: Run
    #: where its logs go, for messages
    logs: str
    #: said on install: things the user should know (never a secret's value)
    notes: tuple[str, ...]
    #: the environment commands run in (PATH finds the manager)
    environ: Mapping[str, str]

    @property
    def manager(self) -> str:
        return self.probe.argv[0]

    def steps(self, action: str) -> tuple[Step, ...]:
        """The steps of `install`, `uninstall` or `status`, for a dry run."""
        steps = {"install": self.install, "uninstall": self.uninstall, "status": (self.status,)}
        return steps[action]


def service_for(
    config: Config,
    *,
    platform: str = sys.platform,
    program: Sequence[str] | None = None,
    uid: int | None = None,
) -> Service:
    """The service for this machine, running this tracesd with this config file."""
    argv = tuple(program or tracesd_program())
    config_path = Path(os.path.abspath(config.source)) if config.source else None
    notes: list[str] = []
    if config.environ.get("TRACES_API_KEY") and config.sync.api_key_file is None:
        notes.append(
            "TRACES_API_KEY is not passed to the service (secrets do not belong in its "
            "file); put the key in a file and name it in [sync] api_key_file"
        )
    if platform.startswith("linux"):
        service = systemd_service(
            program=argv, config_path=config_path, home=config.home, environ=config.environ
        )
    elif platform == "darwin":
        service = launchd_service(
            program=argv,
            config_path=config_path,
            home=config.home,
            environ=config.environ,
            uid=os.getuid() if uid is None else uid,
        )
    else:
        raise ServiceError(
            f"services are supported on Linux (systemd) and macOS (launchd), not {platform}; "
            "start `tracesd run` from your own supervisor"
        )
    return replace(service, notes=(*service.notes, *notes))


def tracesd_program(python: str = sys.executable) -> tuple[str, ...]:
    """The running tracesd as an absolute command: the console script next to the
    interpreter when it is there, else `python -m tracesd`. Symlinks are kept, so a venv's
    `bin/python` stays the venv's."""
    python = os.path.abspath(python)
    script = Path(python).parent / "tracesd"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (python, "-m", "tracesd")


def _daemon_argv(program: Sequence[str], config_path: Path | None) -> list[str]:
    argv = [*program, "run"]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    return argv


def _passthrough(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    return {name: environ[name] for name in names if environ.get(name)}


# ---------------------------------------------------------------------------- systemd


def systemd_service(
    *,
    program: Sequence[str],
    config_path: Path | None,
    home: Path,
    environ: Mapping[str, str],
) -> Service:
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    path = config_home / "systemd" / "user" / UNIT_NAME
    content = render_unit(_daemon_argv(program, config_path), _passthrough(environ, PASSTHROUGH))

    def systemctl(*args: str) -> Run:
        return Run(("systemctl", "--user", *args))

    return Service(
        name=UNIT_NAME,
        path=path,
        content=content,
        install=(
            Write(path, content),
            systemctl("daemon-reload"),
            systemctl("enable", UNIT_NAME),
            # `enable --now` would leave an already running daemon on its old unit
            systemctl("restart", UNIT_NAME),
        ),
        uninstall=(
            systemctl("disable", "--now", UNIT_NAME),
            Remove(path),
            systemctl("daemon-reload"),
        ),
        status=systemctl("status", UNIT_NAME),
        probe=systemctl("show-environment"),
        logs="journalctl --user -u tracesd",
        notes=(),
        environ=environ,
    )


# ---------------------------------------------------------------------------- launchd


def launchd_service(
    *,
    program: Sequence[str],
    config_path: Path | None,
    home: Path,
    environ: Mapping[str, str],
    uid: int,
) -> Service:
    path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    log_dir = home / "Library" / "Logs" / "tracesd"
    environment = {
        "PATH": environ.get("PATH") or FALLBACK_PATH,
        **_passthrough(environ, (*PASSTHROUGH, *LAUNCHD_EXTRA)),
    }
    content = render_plist(_daemon_argv(program, config_path), environment, log_dir / "tracesd.log")
    domain = f"gui/{uid}"
    target = f"{domain}/{LAUNCHD_LABEL}"
    return Service(
        name=LAUNCHD_LABEL,
        path=path,
        content=content,
        install=(
            MakeDir(log_dir),
            Write(path, content),
            # an earlier install may still be loaded; bootstrap refuses a loaded label
            Run(("launchctl", "bootout", target), may_fail=True),
            # clears a `launchctl disable` override, which would keep it from starting
            Run(("launchctl", "enable", target)),
            # RunAtLoad: bootstrapping starts it
            Run(("launchctl", "bootstrap", domain, str(path))),
        ),
        uninstall=(
            Run(("launchctl", "bootout", target), may_fail=True),
            Remove(path),
        ),
        status=Run(("launchctl", "print", target)),
        probe=Run(("launchctl", "print", domain)),
        logs=str(log_dir / "tracesd.log"),
        notes=(),
        environ=environ,
    )


# ------------------------------------------------------------------------------- doing


def describe(steps: Iterable[Step]) -> str:
    """What the steps would do, for --dry-run: files in full, commands as shell lines."""
    out: list[str] = []
    for step in steps:
        match step:
            case MakeDir(path):
                out.append(f"# would create the directory {path}\n")
            case Write(path, content):
                out.append(f"# would write {path}:\n{content}")
            case Remove(path):
                out.append(f"# would remove {path}\n")
            case Run(argv, may_fail):
                note = "  # fails harmlessly when not loaded" if may_fail else ""
                out.append(f"# would run: {shlex.join(argv)}{note}\n")
    return "".join(out)


def install(service: Service) -> None:
    """Write the file and enable and start the service; a failing step raises."""
    _reachable(service)
    _perform(service, service.install)


def uninstall(service: Service) -> bool:
    """Stop, disable and remove the service; False when it was not installed."""
    _reachable(service)
    if not service.path.exists():
        return False
    _perform(service, service.uninstall)
    return True


def status(service: Service) -> tuple[str, bool]:
    """The manager's own account of the service, and whether it is running."""
    _reachable(service)
    result = _run(service, service.status)
    text = (result.stdout + result.stderr).rstrip()
    running = result.returncode == 0
    if service.manager == "launchctl":  # loaded is not running: a crashed job stays loaded
        running = running and re.search(r"^\s*state = running$", text, re.MULTILINE) is not None
    return text, running


def _reachable(service: Service) -> None:
    """Raise a one-line ServiceError when the service manager is missing or unreachable."""
    manager = service.manager
    if _which(service, manager) is None:
        raise ServiceError(
            f"no {manager} on PATH, so there is no service manager to install into; start "
            "`tracesd run` from your own supervisor (`--dry-run` shows the file it would use)"
        )
    result = _run(service, service.probe)
    if result.returncode != 0:
        why = _last_line(result.stderr or result.stdout) or f"exit {result.returncode}"
        if manager == "systemctl":
            fix = "log in to a systemd session (or `loginctl enable-linger`)"
            subject = "`systemctl --user` cannot reach a user service manager"
        else:
            fix = "log in to the Mac's desktop session"
            subject = f"launchctl cannot reach the {service.probe.argv[-1]} domain"
        raise ServiceError(
            f"{subject} ({why}); {fix}, or start `tracesd run` from your own supervisor"
        )


def _perform(service: Service, steps: Iterable[Step]) -> None:
    for step in steps:
        if isinstance(step, Run):
            result = _run(service, step)
            if result.returncode != 0 and not step.may_fail:
                output = (result.stderr or result.stdout).strip() or "no output"
                raise ServiceError(
                    f"`{shlex.join(step.argv)}` failed (exit {result.returncode}): {output}"
                )
            continue
        try:
            match step:
                case MakeDir(path):
                    path.mkdir(parents=True, exist_ok=True)
                case Write(path, content):
                    _write(path, content)
                case Remove(path):
                    path.unlink(missing_ok=True)
        except OSError as exc:
            verb = {MakeDir: "create", Write: "write", Remove: "remove"}[type(step)]
            raise ServiceError(f"cannot {verb} {step.path} ({exc.strerror})") from None


def _write(path: Path, content: str) -> None:
    """Replace the file in one step, so the manager never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _run(service: Service, step: Run) -> subprocess.CompletedProcess[str]:
    executable = _which(service, step.argv[0]) or step.argv[0]
    try:
        return subprocess.run(
            [executable, *step.argv[1:]],
            env=dict(service.environ),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"`{shlex.join(step.argv)}` did not finish within {COMMAND_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot run {step.argv[0]} ({exc.strerror})") from None


def _which(service: Service, name: str) -> str | None:
    return shutil.which(name, path=service.environ.get("PATH") or os.defpath)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
