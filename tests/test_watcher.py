"""The watcher with a real watchdog observer on real directories."""

from __future__ import annotations

import asyncio
import errno
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from tests.helpers import claude_session
from tracesd.capture.adapters import Adapter, build_adapters
from tracesd.capture.watch import Watcher
from tracesd.config import Config
from tracesd.models import TraceMeta


@dataclass
class Recorder:
    paths: list[str] = field(default_factory=list)
    rescans: list[tuple[str, list[str] | None]] = field(default_factory=list)

    def on_path(self, adapter: Adapter, path: str) -> None:
        self.paths.append(path)

    def on_rescan(self, reason: str, roots: list[str] | None) -> None:
        self.rescans.append((reason, roots))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.01)


@dataclass
class Rig:
    watcher: Watcher
    seen: Recorder
    root: Path


@pytest.fixture
async def rig(make_config: Callable[..., Config], home: Path) -> AsyncIterator[Rig]:
    config = make_config(agents__enabled=["claude-code"])
    seen = Recorder()
    watcher = Watcher(build_adapters(config), on_path=seen.on_path, on_rescan=seen.on_rescan)
    yield Rig(watcher, seen, home / ".claude" / "projects")
    watcher.stop()


async def test_a_new_session_file_is_reported(rig: Rig, home: Path, tmp_path: Path) -> None:
    rig.root.mkdir(parents=True)
    rig.watcher.start()
    _, path = claude_session(home, tmp_path)
    await rig.seen.wait_for(lambda: str(path) in rig.seen.paths)


async def test_files_that_are_not_sessions_are_not_reported(rig: Rig, home: Path) -> None:
    rig.root.mkdir(parents=True)
    rig.watcher.start()
    (rig.root / "sessions-index.json").write_text("{}")
    sub = rig.root / "p" / "uuid" / "subagents"
    sub.mkdir(parents=True)
    (sub / "agent-1.jsonl").write_text("{}\n")
    marker = rig.root / "p" / "real.jsonl"
    marker.write_text("{}\n")
    await rig.seen.wait_for(lambda: str(marker) in rig.seen.paths)
    assert set(rig.seen.paths) == {str(marker)}


async def test_reading_watched_files_produces_no_events(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """Our own reads must not come back as events (the opened/closed-no-write trap)."""
    rig.root.mkdir(parents=True)
    _, path = claude_session(home, tmp_path)
    rig.watcher.start()
    await asyncio.sleep(0.2)
    before = rig.watcher.stats.events
    for _ in range(20):
        path.read_bytes()
        list(rig.root.iterdir())
    await asyncio.sleep(0.3)
    assert rig.watcher.stats.events == before
    assert rig.seen.paths == []


async def test_a_root_that_appears_later_is_watched_and_scanned(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    rig.watcher.start()
    assert rig.watcher.watched == []
    rig.root.mkdir(parents=True)
    rig.watcher.check_roots()
    assert rig.seen.rescans == [("root_appeared", [str(rig.root)])]
    _, path = claude_session(home, tmp_path)
    await rig.seen.wait_for(lambda: str(path) in rig.seen.paths)


async def test_a_replaced_root_is_rearmed(rig: Rig, home: Path, tmp_path: Path) -> None:
    """rm -rf root && mkdir root: the new directory is watched and scanned."""
    rig.root.mkdir(parents=True)
    rig.watcher.start()
    shutil.rmtree(rig.root)
    rig.root.mkdir()  # very likely the same inode number: only the delete event tells
    await rig.seen.wait_for(lambda: ("root_appeared", [str(rig.root)]) in rig.seen.rescans)
    _, path = claude_session(home, tmp_path)
    await rig.seen.wait_for(lambda: str(path) in rig.seen.paths)


async def test_a_symlinked_root_reports_paths_under_its_real_location(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    real = tmp_path / "dotfiles" / "claude"
    (real / "projects").mkdir(parents=True)
    (home / ".claude").symlink_to(real)
    rig.watcher.start()
    _, path = claude_session(home, tmp_path)
    expected = str(real / "projects" / path.parent.name / path.name)
    await rig.seen.wait_for(lambda: expected in rig.seen.paths)


async def test_watch_limit_degrades_to_polling_with_an_actionable_hint(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC from inotify: no crash, the root is marked degraded, the log names the sysctl."""
    from tracesd import logs

    logs.configure("info", "json")
    rig.root.mkdir(parents=True)

    def no_watches(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    rig.watcher.start()
    rig.watcher.stop()
    rig.watcher.roots[0].identity = None  # forget it, as if it had just appeared
    rig.watcher.start()
    assert rig.watcher._observer is not None
    monkeypatch.setattr(rig.watcher._observer, "schedule", no_watches)
    rig.watcher.roots[0].identity = None
    rig.watcher.roots[0].watch = None
    rig.watcher.check_roots()
    assert rig.watcher.roots[0].degraded == "limit"
    assert str(rig.root) in rig.watcher.stats.degraded
    assert "fs.inotify.max_user_watches" in capsys.readouterr().err


async def test_an_exception_in_the_event_handler_does_not_stop_watching(
    rig: Rig, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """watchdog's thread would die of it (watchdog #427); it is counted and events flow on."""
    rig.root.mkdir(parents=True)
    adapter = rig.watcher.roots[0].adapter
    real_matches = adapter.matches

    def matches(rel: str) -> bool:
        if "boom" in rel:
            raise ValueError("adapter bug")
        return real_matches(rel)

    monkeypatch.setattr(adapter, "matches", matches)
    rig.watcher.start()
    project = rig.root / "p"
    project.mkdir()
    (project / "boom.jsonl").write_text("{}\n")
    await rig.seen.wait_for(lambda: rig.watcher.stats.handler_errors > 0)
    _, path = claude_session(home, tmp_path)
    await rig.seen.wait_for(lambda: str(path) in rig.seen.paths)


class FlatStore:
    """An adapter whose sessions sit directly in its root (like Amp's threads/)."""

    agent_id = "flat"

    def __init__(self, root: Path) -> None:
        self._root = str(root)

    def roots(self) -> tuple[str, ...]:
        return (self._root,)

    def depth(self, root: str) -> int:
        return 1

    def matches(self, rel: str) -> bool:
        return rel.endswith(".json")

    def parse(self, path: str) -> list[TraceMeta]:
        return []


async def test_a_root_of_depth_one_is_watched_without_its_subdirectories(tmp_path: Path) -> None:
    """An editor's globalStorage holds one store among many extensions' trees: a depth-1
    root costs one watch, and nothing below it is reported."""
    root = tmp_path / "globalStorage"
    (root / "some.extension" / "cache").mkdir(parents=True)
    seen = Recorder()
    watcher = Watcher(
        [cast(Adapter, FlatStore(root))], on_path=seen.on_path, on_rescan=seen.on_rescan
    )
    watcher.start()
    try:
        (root / "some.extension" / "cache" / "deep.json").write_text("{}")
        (root / "state.json").write_text("{}")
        await seen.wait_for(lambda: str(root / "state.json") in seen.paths)
        await asyncio.sleep(0.1)
        assert set(seen.paths) == {str(root / "state.json")}
        assert watcher.watch_count() == 1
    finally:
        watcher.stop()
