"""Scans over real trees: what is found, what is skipped, what a second scan costs."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import FIXTURE_TRACES, claude_session, fixture_home, make_repo
from tracesd.capture import scan
from tracesd.capture.adapters import Adapter, build_adapters
from tracesd.capture.debounce import Dispatcher
from tracesd.capture.ingest import Ingestor
from tracesd.capture.scan import Scanner, discover
from tracesd.config import Config
from tracesd.git.context import GitResolver
from tracesd.store.database import Store


@dataclass
class Rig:
    scanner: Scanner
    store: Store
    adapters: list[Adapter]


@pytest.fixture
async def rig(make_config: Callable[..., Config]) -> AsyncIterator[Rig]:
    config = make_config()
    store = await Store.open(config.storage.db_path)
    ingestor = Ingestor(store, GitResolver(timeout_s=5, environ=config.environ))
    adapters = build_adapters(config)
    dispatcher = Dispatcher(ingestor.ingest_many, cooldown_s=0, workers=4)
    yield Rig(Scanner(adapters, store, dispatcher), store, adapters)
    await dispatcher.close(1)
    await store.close()


async def test_fixture_home_scan_counts_every_session_once(rig: Rig, home: Path) -> None:
    """The fixture tree: every agent's sessions, each once, though some live in several
    files (a store and its index, a transcript and an IDE database); subagents are not."""
    fixture_home(home)
    report = await rig.scanner.run(reason="test")
    assert (report.indexed, report.errors, report.skipped) == (report.discovered, 0, 0)
    assert report.new == len(FIXTURE_TRACES)
    assert await rig.store.count_by_agent() == Counter(a for a, _ in FIXTURE_TRACES)


async def test_a_scan_hands_files_over_in_slices_and_loses_none(
    rig: Rig, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan yields to the event loop between slices of submitted files (so status
    answers during a backfill); every file is still ingested exactly once."""
    monkeypatch.setattr(scan, "SUBMIT_SLICE", 2)
    repo = make_repo(tmp_path / "repo")
    for _ in range(7):
        claude_session(home, repo)
    report = await rig.scanner.run(reason="test")
    assert (report.discovered, report.new, report.indexed, report.errors) == (7, 7, 7, 0)


async def test_second_scan_of_an_unchanged_tree_reads_nothing(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    for _ in range(5):
        claude_session(home, repo)
    await rig.scanner.run(reason="first")
    report = await rig.scanner.run(reason="second")
    assert (report.discovered, report.unchanged, report.new, report.updated) == (5, 5, 0, 0)
    assert report.indexed == 5


async def test_a_changed_file_is_read_again_by_the_next_scan(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    _, path = claude_session(home, tmp_path, "before")
    await rig.scanner.run(reason="first")
    path.write_text(path.read_text().replace("before", "after"))
    os.utime(path, ns=(1, 1))
    report = await rig.scanner.run(reason="second")
    assert (report.unchanged, report.updated) == (0, 1)


async def test_bad_files_are_counted_as_errors_and_stay_counted(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    claude_session(home, tmp_path)
    bad = home / ".claude" / "projects" / "p" / "bad.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00garbage\n")
    first = await rig.scanner.run(reason="first")
    second = await rig.scanner.run(reason="second")
    assert (first.indexed, first.errors) == (1, 1)
    assert (second.indexed, second.errors, second.unchanged) == (1, 1, 2)


def test_discovery_never_follows_symlinked_directories(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """Symlink loops and links out of the root are not walked."""
    _, path = claude_session(home, tmp_path)
    project = path.parent
    (project / "loop").symlink_to(project)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.jsonl").write_text("{}\n")
    (home / ".claude" / "projects" / "escape").symlink_to(outside)
    found = discover(rig.adapters)
    assert [f.path for f in found] == [str(path)]


def test_a_symlinked_root_is_walked_at_its_real_path(rig: Rig, home: Path, tmp_path: Path) -> None:
    """Dotfile users symlink ~/.claude: the sessions behind the link are found."""
    real = tmp_path / "dotfiles" / "claude"
    real.mkdir(parents=True)
    (home / ".claude").symlink_to(real)
    _, path = claude_session(home, tmp_path)
    found = discover(rig.adapters)
    assert [f.path for f in found] == [str(real / "projects" / path.parent.name / path.name)]


def test_discovery_stops_at_the_layout_depth(rig: Rig, home: Path) -> None:
    deep = home / ".claude" / "projects" / "p" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "s.jsonl").write_text("{}\n")
    assert discover(rig.adapters) == []


def _copy(source: Path, target: bytes) -> None:
    with open(target, "wb") as f:
        f.write(source.read_bytes())


async def test_a_path_that_is_not_utf8_is_skipped_not_fatal(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    _, good = claude_session(home, tmp_path)
    _copy(good, os.fsencode(good.parent) + b"/\xff\xfe.jsonl")
    report = await rig.scanner.run(reason="test")
    assert report.indexed == 1
