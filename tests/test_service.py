"""`tracesd service`: the rendered unit and plist, and install/uninstall/status against fake
`systemctl`/`launchctl` scripts placed first on PATH (they log their arguments)."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import isolated_env, tracesd
from tracesd.config import load_config
from tracesd.errors import ServiceError
from tracesd.service import install as service

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).parent.parent
PROGRAM = ("/opt/tracesd/bin/tracesd",)
#: what an installing shell might hold: agent roots to pass on, secrets and noise to leave out
SHELL_ENV = {
    "PATH": "/opt/homebrew/bin:/usr/bin:/bin",
    "CLAUDE_CONFIG_DIR": "/srv/alice/claude",
    "XDG_DATA_HOME": "/srv/alice/data",
    "TRACES_API_KEY": "sk-very-secret",
    "TRACESD_SERVER_TOKENS": "tok-secret",
    "EDITOR": "vim",
}

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the CLI picks systemd on Linux"
)

FakeManager = Callable[..., Path]


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


@pytest.fixture
def fake_manager(fake_bin: Path) -> FakeManager:
    """Write `fake_bin/<name>`: it appends its arguments to `<name>.log` and answers the given
    argument strings with (exit code, stdout, stderr); anything else succeeds silently."""

    def make(name: str, answers: dict[str, tuple[int, str, str]] | None = None) -> Path:
        log = fake_bin.parent / f"{name}.log"
        cases = "".join(
            f"  {shlex.quote(args)}) printf '%s' {shlex.quote(out)}; "
            f"printf '%s' {shlex.quote(err)} >&2; exit {rc} ;;\n"
            for args, (rc, out, err) in (answers or {}).items()
        )
        script = fake_bin / name
        script.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n"
            f'case "$*" in\n{cases}esac\nexit 0\n'
        )
        script.chmod(0o755)
        return log

    return make


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def systemd(
    *,
    program: tuple[str, ...] = PROGRAM,
    config_path: Path | None = Path("/home/alice/.config/tracesd/config.toml"),
) -> service.Service:
    return service.systemd_service(
        program=program,
        config_path=config_path,
        home=Path("/home/alice"),
        environ={"HOME": "/home/alice", **SHELL_ENV},
    )


def launchd(
    *, config_path: Path | None = Path("/Users/alice/.config/tracesd/config.toml")
) -> service.Service:
    return service.launchd_service(
        program=PROGRAM,
        config_path=config_path,
        home=Path("/Users/alice"),
        environ={"HOME": "/Users/alice", **SHELL_ENV},
        uid=501,
    )


def unit_settings(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, comments dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


# -------------------------------------------------------------------------- rendering


def test_systemd_install_dry_run_matches_the_golden_text() -> None:
    """The unit (ExecStart, config, agent variables) and the systemctl commands, exactly."""
    expected = (GOLDEN / "service-install-systemd.txt").read_text()
    assert expected == service.describe(systemd().install)


def test_launchd_install_dry_run_matches_the_golden_text() -> None:
    """The log directory, the plist and the launchctl commands, exactly."""
    expected = (GOLDEN / "service-install-launchd.txt").read_text()
    assert expected == service.describe(launchd().install)


def test_uninstall_and_status_dry_runs_name_every_step() -> None:
    """Uninstall stops, disables and removes; status asks the manager."""
    assert service.describe(systemd().uninstall) == (
        "# would run: systemctl --user disable --now tracesd.service\n"
        "# would remove /home/alice/.config/systemd/user/tracesd.service\n"
        "# would run: systemctl --user daemon-reload\n"
    )
    assert service.describe(systemd().steps("status")) == (
        "# would run: systemctl --user status tracesd.service\n"
    )
    assert service.describe(launchd().uninstall) == (
        "# would run: launchctl bootout gui/501/dev.tracesd  # fails harmlessly when not loaded\n"
        "# would remove /Users/alice/Library/LaunchAgents/dev.tracesd.plist\n"
    )
    assert service.describe(launchd().steps("status")) == (
        "# would run: launchctl print gui/501/dev.tracesd\n"
    )


def test_the_unit_has_every_required_directive() -> None:
    settings = unit_settings(systemd().content)
    unit, svc, install = (dict(settings[s]) for s in ("Unit", "Service", "Install"))
    assert {"StartLimitIntervalSec": "300", "StartLimitBurst": "5"}.items() <= unit.items()
    assert {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "5",
        "TimeoutStopSec": "30",
        "NoNewPrivileges": "yes",
        "UMask": "0077",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "MemoryHigh": "256M",
        "MemoryMax": "512M",
        "CPUQuota": "50%",
    }.items() <= svc.items()
    config = "/home/alice/.config/tracesd/config.toml"
    assert svc["ExecStart"] == f"/opt/tracesd/bin/tracesd run --config {config}"
    assert "MemoryDenyWriteExecute" not in svc
    assert install == {"WantedBy": "default.target"}


def test_without_a_config_file_execstart_has_no_config_option() -> None:
    unit = dict(unit_settings(systemd(config_path=None).content)["Service"])
    assert unit["ExecStart"] == "/opt/tracesd/bin/tracesd run"
    job = plistlib.loads(launchd(config_path=None).content.encode())
    assert job["ProgramArguments"] == ["/opt/tracesd/bin/tracesd", "run"]


def test_the_plist_parses_and_has_every_required_key() -> None:
    job = plistlib.loads(launchd().content.encode())
    assert job["Label"] == "dev.tracesd"
    assert job["ProgramArguments"] == [
        "/opt/tracesd/bin/tracesd",
        "run",
        "--config",
        "/Users/alice/.config/tracesd/config.toml",
    ]
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert (job["ThrottleInterval"], job["ExitTimeOut"]) == (10, 20)
    assert (job["ProcessType"], job["LowPriorityIO"]) == ("Background", True)
    assert job["Umask"] == 0o077
    log = "/Users/alice/Library/Logs/tracesd/tracesd.log"
    assert (job["StandardOutPath"], job["StandardErrorPath"]) == (log, log)
    assert job["EnvironmentVariables"]["PATH"] == "/opt/homebrew/bin:/usr/bin:/bin"


def test_agent_variables_are_passed_on_and_secrets_never() -> None:
    """The service sees the shell's agent roots; the API key and server tokens stay out."""
    unit = systemd().content
    assert "Environment=CLAUDE_CONFIG_DIR=/srv/alice/claude" in unit
    assert "Environment=XDG_DATA_HOME=/srv/alice/data" in unit
    env = plistlib.loads(launchd().content.encode())["EnvironmentVariables"]
    assert env == {
        "PATH": "/opt/homebrew/bin:/usr/bin:/bin",
        "CLAUDE_CONFIG_DIR": "/srv/alice/claude",
        "XDG_DATA_HOME": "/srv/alice/data",
    }
    for text in (unit, launchd().content):
        for leak in ("TRACES_API_KEY", "sk-very-secret", "TRACESD_SERVER_TOKENS", "tok-secret"):
            assert leak not in text
        assert "EDITOR" not in text


def test_the_traces_cli_database_variables_are_passed_on() -> None:
    """The service finds the Traces CLI's database where the user's `traces` does."""
    cli_env = {"TRACES_EVENTSTORE": "/srv/alice/t.db", "TRACES_HTTP_URL": "http://10.0.0.2:8787"}
    unit = service.systemd_service(
        program=PROGRAM,
        config_path=None,
        home=Path("/home/alice"),
        environ={"HOME": "/home/alice", **SHELL_ENV, **cli_env},
    ).content
    for name, value in cli_env.items():
        assert f"Environment={name}={value}\n" in unit


def test_an_api_key_in_the_environment_brings_a_note_about_api_key_file(home: Path) -> None:
    config = load_config(environ=isolated_env(home, TRACES_API_KEY="sk-very-secret"))
    notes = service.service_for(config, platform="linux", program=PROGRAM).notes
    assert len(notes) == 1
    assert "api_key_file" in notes[0]
    assert "sk-very-secret" not in notes[0]
    quiet = load_config(environ=isolated_env(home))
    assert service.service_for(quiet, platform="darwin", program=PROGRAM).notes == ()


def test_odd_characters_are_escaped_for_systemd_and_for_xml() -> None:
    """Spaces and quotes are quoted, `%` and `$` cannot expand, XML specials are escaped."""
    odd = Path('/home/alice/my "cfg"/50%$HOME&<x>.toml')
    unit = dict(unit_settings(systemd(config_path=odd).content)["Service"])
    assert unit["ExecStart"] == (
        '/opt/tracesd/bin/tracesd run --config "/home/alice/my \\"cfg\\"/50%%$$HOME&<x>.toml"'
    )
    job = plistlib.loads(launchd(config_path=odd).content.encode())
    assert job["ProgramArguments"][-1] == str(odd)
    with pytest.raises(ServiceError, match="control character"):
        systemd(config_path=Path("/home/alice/a\nb.toml"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path: Path) -> None:
    """systemd itself parses the unit without a warning, odd paths included."""
    tools = tmp_path / "my tools"
    tools.mkdir()
    program = tools / "tracesd"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "unit" / "tracesd.service"
    unit.parent.mkdir()
    unit.write_text(
        systemd(program=(str(program),), config_path=tmp_path / "50% $cfg.toml").content
    )
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_the_repo_paths_are_the_package_templates_and_parse() -> None:
    """systemd/ and launchd/ hold links to the one copy shipped in the package."""
    for link, target in (
        ("systemd/tracesd.service", "tracesd/service/units/tracesd.service"),
        ("launchd/dev.tracesd.plist", "tracesd/service/units/dev.tracesd.plist"),
    ):
        assert (REPO / link).is_symlink()
        assert (REPO / link).resolve() == (REPO / target).resolve()
    template = plistlib.loads((REPO / "launchd/dev.tracesd.plist").read_bytes())
    assert template["Label"] == "dev.tracesd"


def test_the_running_tracesd_is_the_console_script_next_to_python(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    assert service.tracesd_program(str(python)) == (str(python), "-m", "tracesd")
    script = python.parent / "tracesd"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert service.tracesd_program(str(python)) == (str(script),)


def test_an_unsupported_platform_gets_a_plain_message(home: Path) -> None:
    config = load_config(environ=isolated_env(home))
    with pytest.raises(ServiceError, match="not win32"):
        service.service_for(config, platform="win32")


# ------------------------------------------------------------------- the command line


@linux_only
def test_dry_run_prints_the_unit_and_touches_nothing(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    """Nothing runs and nothing is written; a relative --config becomes absolute."""
    log = fake_manager("systemctl")
    (home / "my.toml").write_text("")
    env = isolated_env(home, PATH=str(fake_bin))
    result = tracesd(
        home, "service", "install", "--dry-run", "--config", "my.toml", env=env, cwd=home
    )
    assert result.returncode == 0, result.stderr
    program = " ".join(service.tracesd_program())
    assert f"ExecStart={program} run --config {home / 'my.toml'}\n" in result.stdout
    assert result.stdout.startswith(f"# would write {home}/.config/systemd/user/tracesd.service:\n")
    assert calls(log) == []
    assert not (home / ".config").exists()


@linux_only
def test_install_without_systemctl_says_so_in_one_line_and_writes_nothing(
    home: Path, fake_bin: Path
) -> None:
    result = tracesd(home, "service", "install", env=isolated_env(home, PATH=str(fake_bin)))
    assert result.returncode == 1
    assert result.stderr.startswith("tracesd service: no systemctl on PATH")
    assert len(result.stderr.splitlines()) == 1
    assert not (home / ".config").exists()


@linux_only
def test_install_without_a_user_manager_says_so_in_one_line_and_writes_nothing(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    """As in a container: systemctl exists, but `--user` reaches no manager."""
    down = (1, "", "Failed to connect to bus: No medium found\n")
    log = fake_manager("systemctl", {"--user show-environment": down})
    result = tracesd(home, "service", "install", env=isolated_env(home, PATH=str(fake_bin)))
    assert result.returncode == 1
    assert result.stderr == (
        "tracesd service: `systemctl --user` cannot reach a user service manager (Failed to "
        "connect to bus: No medium found); log in to a systemd session (or `loginctl "
        "enable-linger`), or start `tracesd run` from your own supervisor\n"
    )
    assert calls(log) == ["--user show-environment"]
    assert not (home / ".config").exists()


@linux_only
def test_install_then_uninstall_on_a_fake_systemctl(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    """Install writes the unit and enables and starts it; uninstall reverses it in order."""
    log = fake_manager("systemctl")
    (home / ".config" / "tracesd").mkdir(parents=True)
    config = home / ".config" / "tracesd" / "config.toml"
    config.write_text("")
    env = isolated_env(home, PATH=str(fake_bin), CODEX_HOME=str(home / "codex"))
    unit = home / ".config" / "systemd" / "user" / "tracesd.service"

    result = tracesd(home, "service", "install", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"installed {unit}; tracesd.service is enabled and started\n"
        "logs: journalctl --user -u tracesd\n"
    )
    expected = service.systemd_service(
        program=service.tracesd_program(), config_path=config, home=home, environ=env
    )
    assert unit.read_text() == expected.content
    assert f"Environment=CODEX_HOME={home / 'codex'}\n" in expected.content
    assert calls(log) == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable tracesd.service",
        "--user restart tracesd.service",
    ]

    log.unlink()
    result = tracesd(home, "service", "uninstall", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"removed {unit}; tracesd.service is stopped and disabled\n"
    assert not unit.exists()
    assert calls(log) == [
        "--user show-environment",
        "--user disable --now tracesd.service",
        "--user daemon-reload",
    ]

    again = tracesd(home, "service", "uninstall", env=env)
    assert (again.returncode, again.stdout) == (0, f"not installed (no {unit})\n")


@linux_only
def test_a_failing_step_stops_the_install_and_names_the_command(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    failed = (1, "", "Job for tracesd.service failed because the service did not start.\n")
    log = fake_manager("systemctl", {"--user restart tracesd.service": failed})
    result = tracesd(home, "service", "install", env=isolated_env(home, PATH=str(fake_bin)))
    assert result.returncode == 1
    assert result.stderr == (
        "tracesd service: `systemctl --user restart tracesd.service` failed (exit 1): "
        "Job for tracesd.service failed because the service did not start.\n"
    )
    assert calls(log)[-1] == "--user restart tracesd.service"


@linux_only
def test_status_prints_systemctl_and_exits_3_when_not_running(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    env = isolated_env(home, PATH=str(fake_bin))
    inactive = (3, "○ tracesd.service\n     Active: inactive (dead)\n", "")
    fake_manager("systemctl", {"--user status tracesd.service": inactive})
    result = tracesd(home, "service", "status", env=env)
    assert result.returncode == 3
    unit = home / ".config" / "systemd" / "user" / "tracesd.service"
    assert result.stdout == (
        "○ tracesd.service\n     Active: inactive (dead)\n"
        f"not installed (no {unit}): run `tracesd service install`\n"
    )

    running = (0, "● tracesd.service\n     Active: active (running)\n", "")
    fake_manager("systemctl", {"--user status tracesd.service": running})
    unit.parent.mkdir(parents=True)
    unit.touch()
    result = tracesd(home, "service", "status", env=env)
    assert (result.returncode, result.stdout) == (0, running[1])


# ------------------------------------------------------------- launchd, on any platform


def test_launchd_install_then_uninstall_on_a_fake_launchctl(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    """The plist and log directory are created and the job booted in; uninstall boots it out
    and removes the plist, and keeps the logs."""
    not_loaded = (3, "", "Boot-out failed: 3: No such process\n")
    log = fake_manager("launchctl", {"bootout gui/501/dev.tracesd": not_loaded})
    config = load_config(environ=isolated_env(home, PATH=str(fake_bin)))
    job = service.service_for(config, platform="darwin", program=PROGRAM, uid=501)
    plist = home / "Library" / "LaunchAgents" / "dev.tracesd.plist"
    assert job.path == plist

    service.install(job)
    assert plist.read_text() == job.content
    assert (home / "Library" / "Logs" / "tracesd").is_dir()
    assert calls(log) == [
        "print gui/501",
        "bootout gui/501/dev.tracesd",
        "enable gui/501/dev.tracesd",
        f"bootstrap gui/501 {plist}",
    ]

    log.unlink()
    assert service.uninstall(job) is True
    assert not plist.exists()
    assert (home / "Library" / "Logs" / "tracesd").is_dir()
    assert calls(log) == ["print gui/501", "bootout gui/501/dev.tracesd"]
    assert service.uninstall(job) is False


def test_launchd_without_a_gui_session_says_so(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    no_domain = (113, "", "Bad request.\nCould not find domain for user gui: 501\n")
    fake_manager("launchctl", {"print gui/501": no_domain})
    config = load_config(environ=isolated_env(home, PATH=str(fake_bin)))
    job = service.service_for(config, platform="darwin", program=PROGRAM, uid=501)
    with pytest.raises(ServiceError) as info:
        service.install(job)
    assert str(info.value) == (
        "launchctl cannot reach the gui/501 domain (Could not find domain for user gui: 501); "
        "log in to the Mac's desktop session, or start `tracesd run` from your own supervisor"
    )
    assert not (home / "Library").exists()


def test_launchd_status_is_running_only_when_launchctl_says_so(
    home: Path, fake_bin: Path, fake_manager: FakeManager
) -> None:
    """A loaded job that crashed is loaded, not running."""
    config = load_config(environ=isolated_env(home, PATH=str(fake_bin)))
    job = service.service_for(config, platform="darwin", program=PROGRAM, uid=501)
    running = "gui/501/dev.tracesd = {\n\tstate = running\n\tpid = 4242\n}\n"
    fake_manager("launchctl", {"print gui/501/dev.tracesd": (0, running, "")})
    assert service.status(job) == (running.rstrip(), True)
    waiting = running.replace("running", "not running").replace("\tpid = 4242\n", "")
    fake_manager("launchctl", {"print gui/501/dev.tracesd": (0, waiting, "")})
    assert service.status(job) == (waiting.rstrip(), False)
