"""Paths that are not URIs and directories spelled many ways (issue 10, 2.13): real `tracesd`
processes on real files.

- Every SQLite `file:` URI is built by `tracesd.sqliteuri`: a database or an agent's store
  whose path holds `#`, `?`, `%`, a space, non-ASCII or a leading `//` is the one opened.
- `[capture] exclude` matches the directory, not one spelling of it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    FIXTURE_TRACES,
    claude_session,
    db_path,
    fixture_home,
    isolated_env,
    query,
    tracesd,
)
from tracesd.store.migrations import SCHEMA_VERSION

#: directory names that a naive `file:{path}` URI misreads
ODD_NAMES = {
    "hash": "a#b",
    "question": "a?mode=rwc",
    "percent": "a%41b",
    "space": "a b",
    "non_ascii": "données-é",
    "all": "x #?%é y",
}


def tree(root: Path) -> set[str]:
    """Every path under `root` (to see a stray file appear)."""
    return {os.path.join(d, name) for d, dirs, files in os.walk(root) for name in dirs + files}


def with_db(home: Path, db: str) -> dict[str, str]:
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[storage]\ndb_path = {json.dumps(db)}\n")
    return isolated_env(home)


@pytest.mark.parametrize("name", [*ODD_NAMES, "double_slash"])
def test_doctor_reads_a_database_at_an_odd_path_and_creates_nothing(
    home: Path, tmp_path: Path, name: str
) -> None:
    """Pass: a database created by `tracesd scan` in a directory named with `#`, `?`,
    `%`, a space, non-ASCII, or spelled with a leading `//`: `doctor` reports the current
    schema for it (`ok`, not schema 0 or "cannot be read") and no file appears anywhere
    under the test's directory while doctor runs (but the database's own -wal and -shm)."""
    where = tmp_path / ODD_NAMES.get(name, "plain") / "db"
    db = str(where / "traces.db")
    if name == "double_slash":
        db = "/" + db
    env = with_db(home, db)
    scanned = tracesd(home, "scan", env=env)
    assert scanned.returncode == 0, scanned.stderr
    assert (where / "traces.db").is_file()
    before = tree(tmp_path)

    result = tracesd(home, "doctor", "--json", env=env)

    [check] = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "database"]
    assert check["status"] == "ok", check
    assert f"schema {SCHEMA_VERSION}, 0 traces" in check["detail"]
    sidecars = {f"{where / 'traces.db'}-wal", f"{where / 'traces.db'}-shm"}  # SQLite's own
    assert tree(tmp_path) - before - sidecars == set()


@pytest.mark.parametrize("name", ["all", "double_slash"])
def test_agents_stores_at_odd_paths_are_read(tmp_path: Path, name: str) -> None:
    """Pass: the fixture HOME (every agent, the SQLite stores of OpenCode, Cursor and
    Cline among them) under a directory named `x #?%é y`, or reached through a leading
    `//`: `tracesd scan` indexes every fixture session with 0 errors."""
    home = fixture_home(tmp_path / ODD_NAMES.get(name, "plain") / "home")
    spelled = ("/" + str(home)) if name == "double_slash" else str(home)
    env = isolated_env(home, HOME=spelled, XDG_CONFIG_HOME=spelled + "/.config")

    result = tracesd(home, "scan", "--json", env=env)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["errors"], report["new"]) == (0, len(FIXTURE_TRACES)), report
    listed = json.loads(tracesd(home, "list", "--json", "--limit", "1000", env=env).stdout)
    by_agent = Counter(t["agent_id"] for t in listed["traces"])
    assert by_agent == Counter(a for a, _ in FIXTURE_TRACES)


# ---------------------------------------------------------------------- exclusions


def spellings(base: str, name: str) -> dict[str, str]:
    """`base/name` written seven ways (`base` may itself be a symlink or `~`)."""
    return {
        "plain": f"{base}/{name}",
        "double_slash": f"{base}//{name}",
        "dot": f"{base}/./{name}",
        "dotdot": f"{base}/gone/../{name}",
        "trailing_slash": f"{base}/{name}/",
        "leading_double_slash": f"/{base}/{name}" if base.startswith("/") else f"{base}/{name}",
    }


PATTERNS = [
    *(("real", key) for key in spellings("/", "x")),
    ("link", "plain"),
    ("link", "double_slash"),
    ("tilde", "plain"),
    ("real", "glob"),
    ("link", "glob"),
    ("tilde", "glob"),
]


@pytest.mark.parametrize(("base", "spelling"), PATTERNS)
def test_an_excluded_directory_is_excluded_however_either_side_spells_it(
    home: Path, base: str, spelling: str
) -> None:
    """Pass: `[capture] exclude` holds the directory spelled one way (`//`, `/./`,
    `/gone/../`, a trailing slash, a leading `//`, through a symlink, with `~`, or as a
    `dir/**` glob of any of those); sessions whose working directory is that directory
    spelled each of those ways (and `~/...`, and a subdirectory for a `/**` pattern) are
    not stored by `tracesd scan`; a session in a sibling directory is."""
    real = home / "work"
    (real / "secret" / "sub").mkdir(parents=True)
    (real / "open").mkdir()
    (home / "link").symlink_to(real)
    bases = {"real": str(real), "link": str(home / "link"), "tilde": "~/work"}
    if spelling == "glob":
        pattern = spellings(bases[base], "secret")["double_slash"] + "/**"
    else:
        pattern = spellings(bases[base], "secret")[spelling]
    config = home / ".config" / "tracesd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"[capture]\nexclude = {json.dumps([pattern])}\n")

    cwds = [
        *spellings(str(real), "secret").values(),
        *spellings(str(home / "link"), "secret").values(),
        "~/work/secret",
    ]
    if spelling == "glob":
        cwds += [f"{real}/secret/sub", f"{home}/link//secret/./sub/"]
    excluded = {
        claude_session(home, cwd, f"excluded {i}", session_id=f"excluded-{i}")[0]: cwd
        for i, cwd in enumerate(cwds)
    }
    control, _ = claude_session(home, real / "open", "open", session_id="open")

    result = tracesd(home, "scan", "--json")

    assert result.returncode == 0, result.stderr
    stored = {row["id"] for row in query(db_path(home), "SELECT id FROM traces")}
    assert control in stored
    assert {excluded[i] for i in stored & set(excluded)} == set()
