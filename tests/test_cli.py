"""The command line as users and scripts call it: real processes, real files."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    FIXTURE_TRACES,
    claude_session,
    codex_session,
    db_path,
    fixture_home,
    git,
    make_repo,
    tracesd,
)
from tracesd import __version__


def test_scan_json_prints_exactly_one_document_with_counts(home: Path) -> None:
    fixture_home(home)
    result = tracesd(home, "scan", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    files = report["discovered"]
    assert (report["indexed"], report["errors"], report["new"]) == (files, 0, len(FIXTURE_TRACES))

    again = json.loads(tracesd(home, "scan", "--json").stdout)
    assert (again["discovered"], again["unchanged"], again["new"]) == (files, files, 0)


def test_scan_human_output_is_one_line(home: Path) -> None:
    fixture_home(home)
    result = tracesd(home, "scan")
    assert result.returncode == 0
    [line] = result.stdout.splitlines()
    assert re.match(r"discovered (\d+) session files: \1 indexed", line), line


def test_scan_then_list_shows_git_context(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", remote="https://github.com/acme/app.git")
    session_id, _ = claude_session(home, repo, "Wire the list command")
    assert tracesd(home, "scan").returncode == 0

    listed = json.loads(tracesd(home, "list", "--json").stdout)["traces"]
    assert [t["id"] for t in listed] == [session_id]
    assert listed[0]["git_remote_url"] == "https://github.com/acme/app"
    assert listed[0]["git_branch"] == "main"
    assert listed[0]["git_ref"] == git(repo, "rev-parse", "HEAD")

    table = tracesd(home, "list").stdout.splitlines()
    assert table[0].split() == [
        *("WHEN", "AGENT", "ID", "BRANCH", "REF", "REPOSITORY", "FOLLOWED", "TITLE")
    ]
    assert "github.com/acme/app " in table[1]
    assert listed[0]["followed"] is False  # sync is off
    assert listed[0]["messages"] is None
    assert "Wire the list command" in table[1]


def test_list_filters_by_agent_repo_and_directory(home: Path, tmp_path: Path) -> None:
    app = make_repo(tmp_path / "app", remote="https://github.com/acme/app.git")
    lib = make_repo(tmp_path / "lib", remote="https://github.com/acme/lib.git")
    (app / "sub").mkdir()
    a, _ = claude_session(home, app)
    b, _ = claude_session(home, app / "sub")
    c, _ = codex_session(home, lib)
    tracesd(home, "scan")

    def ids(*args: str) -> set[str]:
        out = tracesd(home, "list", "--json", *args)
        assert out.returncode == 0, out.stderr
        return {t["id"] for t in json.loads(out.stdout)["traces"]}

    assert ids() == {a, b, c}
    assert ids("--agent", "codex") == {c}
    assert ids("--repo", "https://github.com/acme/app") == {a, b}
    assert ids("--dir", str(app)) == {a, b}
    assert ids("--dir", str(app / "sub")) == {b}
    assert len(ids("--limit", "1")) == 1


@pytest.mark.parametrize(
    "form",
    [
        "https://github.com/acme/app",
        "https://github.com/acme/app.git/",
        "https://u:tok@GitHub.com/acme/app.git?x=1#f",
        "git@github.com:acme/app.git",
        "git@GitHub.com:/acme/app",
        "ssh://git@github.com:22/acme/app.git/",
        "git+ssh://github.com/acme/app",
    ],
)
def test_list_repo_takes_any_form_of_the_repository_url(
    home: Path, tmp_path: Path, form: str
) -> None:
    """`--repo` is canonicalised like the stored URL (INTERFACE section 5): every form of
    one repository lists its traces, and only its traces."""
    app = make_repo(tmp_path / "app", remote="git@github.com:acme/app.git")
    other = make_repo(tmp_path / "other", remote="https://github.com/acme/app-other.git")
    a, _ = claude_session(home, app)
    b, _ = codex_session(home, app)
    claude_session(home, other)
    assert tracesd(home, "scan").returncode == 0

    out = tracesd(home, "list", "--json", "--repo", form)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)["traces"]
    assert {t["id"] for t in listed} == {a, b}
    assert {t["git_remote_url"] for t in listed} == {"https://github.com/acme/app"}


def test_list_without_a_database_creates_nothing(home: Path) -> None:
    result = tracesd(home, "list", "--json")
    assert (result.returncode, json.loads(result.stdout)) == (0, {"traces": []})
    assert not db_path(home).parent.exists()
    assert not (home / ".traces").exists()


def test_a_newer_database_is_refused_with_a_clear_message(home: Path) -> None:
    db = db_path(home)
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 7")
    result = tracesd(home, "list")
    assert result.returncode == 1
    assert "schema version 7" in result.stderr
    assert "upgrade tracesd" in result.stderr


def test_version_and_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tracesd", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"tracesd {__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "tracesd"
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "scan", "list"):
        assert command in out.stdout
