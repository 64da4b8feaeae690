"""Ingest in-process: real files, real git, real SQLite."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, claude_session, codex_session, commit, git, make_repo
from tracesd.capture.adapters import Adapter, build_adapters
from tracesd.capture.counts import CaptureCounts
from tracesd.capture.ingest import Ingestor, Item, Result
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.git.context import GitResolver
from tracesd.models import Parsed
from tracesd.store.database import Store


@dataclass
class Rig:
    store: Store
    ingestor: Ingestor
    adapters: dict[str, Adapter]
    #: what the rig's ingests did, added up as the daemon does
    counts: CaptureCounts

    async def ingest(self, path: Path, agent: str = "claude-code") -> Result:
        [result] = await self.ingest_many([Item(self.adapters[agent], str(path))])
        return result

    async def ingest_many(self, items: Sequence[Item]) -> list[Result]:
        results = await self.ingestor.ingest_many(items)
        self.counts.add(results)
        return results


@pytest.fixture
async def rig(make_config: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Rig]:
    config = make_config(capture__exclude=[str(tmp_path / "secret") + "/**"])
    store = await Store.open(config.storage.db_path)
    git_resolver = GitResolver(timeout_s=5, environ=config.environ)
    ingestor = Ingestor(store, git_resolver, exclude=config.capture.exclude)
    adapters = {a.agent_id: a for a in build_adapters(config)}
    yield Rig(store, ingestor, adapters, CaptureCounts())
    await store.close()


async def test_new_session_is_stored_with_git_context(rig: Rig, home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", remote="https://bob:tok@github.com/acme/app.git")
    session_id, path = claude_session(home, repo, "Add a flag")
    result = await rig.ingest(path)
    assert (result.captured, result.error) == (1, None)
    trace = await rig.store.get(session_id)
    assert trace is not None
    assert trace.git_remote_url == "https://github.com/acme/app"
    assert trace.git_branch == "main"
    assert trace.git_ref == git(repo, "rev-parse", "HEAD")
    assert (trace.title, trace.directory, trace.source_path) == ("Add a flag", str(repo), str(path))
    assert rig.counts.captured_total == 1


async def test_unchanged_file_causes_no_database_write(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """Reading the same file again commits nothing (an idle daemon writes nothing). The file
    was written a minute ago: a read within models.RACY_FINE_NS of its mtime is recorded
    again by the next one, which a slow machine would make the second read here."""
    repo = make_repo(tmp_path / "repo")
    _, path = claude_session(home, repo)
    minute_ago = time.time() - 60
    os.utime(path, (minute_ago, minute_ago))
    await rig.ingest(path)
    wal = rig.store.path.with_name(rig.store.path.name + "-wal")
    before = wal.stat().st_size, wal.stat().st_mtime_ns
    result = await rig.ingest(path)
    assert (result.captured, result.updated) == (0, 0)
    assert (wal.stat().st_size, wal.stat().st_mtime_ns) == before


async def test_later_changes_update_text_but_never_the_captured_git_context(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """Capture is the moment of truth: a checkout after the first sighting changes nothing."""
    repo = make_repo(tmp_path / "repo")
    first_ref = git(repo, "rev-parse", "HEAD")
    session_id, path = claude_session(home, repo, "first prompt")
    await rig.ingest(path)

    git(repo, "checkout", "-q", "-b", "elsewhere")
    commit(repo)
    with path.open("a") as f:
        reply = {
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": "ok!"}]},
            "timestamp": "2026-11-28T11:00:00.000Z",
        }
        f.write(json.dumps(reply) + "\n")
    result = await rig.ingest(path)

    assert result.updated == 1
    trace = await rig.store.get(session_id)
    assert trace is not None
    assert (trace.git_branch, trace.git_ref) == ("main", first_ref)
    assert (trace.title, trace.preview) == ("first prompt", "ok!")


async def test_directory_learned_later_captures_git_then(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """A transcript whose first lines carry no cwd gets git context once the cwd appears."""
    repo = make_repo(tmp_path / "repo")
    project = home / ".claude" / "projects" / "p"
    project.mkdir(parents=True)
    path = project / "s1.jsonl"
    no_cwd = {"type": "user", "message": {"content": "hi"}, "timestamp": "2026-11-28T10:00:00Z"}
    path.write_text(json.dumps(no_cwd) + "\n")
    await rig.ingest(path)
    trace = await rig.store.get("s1")
    assert trace is not None
    assert (trace.directory, trace.git_ref) == (None, None)

    with path.open("a") as f:
        f.write(json.dumps({**no_cwd, "cwd": str(repo), "message": {"content": "more"}}) + "\n")
    await rig.ingest(path)
    trace = await rig.store.get("s1")
    assert trace is not None
    assert trace.directory == str(repo)
    assert trace.git_ref == git(repo, "rev-parse", "HEAD")


async def test_excluded_directories_are_never_stored(rig: Rig, home: Path, tmp_path: Path) -> None:
    secret = make_repo(tmp_path / "secret" / "project")
    session_id, path = claude_session(home, secret)
    await rig.ingest(path)
    assert await rig.store.get(session_id) is None
    assert rig.counts.skipped_by_reason["excluded"] == 1


async def test_agent_recorded_git_fills_in_when_the_directory_is_gone(rig: Rig, home: Path) -> None:
    """An old Codex session whose directory no longer exists keeps what Codex recorded."""
    rollout = next((FIXTURES / "home" / ".codex" / "sessions").rglob("rollout-*.jsonl"))
    meta = json.loads(rollout.read_text().splitlines()[0])
    meta["payload"]["git"]["repository_url"] = "https://u:ghp_LEAK@github.com/example/x.git"
    day = home / ".codex" / "sessions" / "2026" / "11" / "20"
    day.mkdir(parents=True)
    path = day / rollout.name
    lines = rollout.read_text().splitlines()
    path.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")

    await rig.ingest(path, "codex")

    trace = await rig.store.get(meta["payload"]["id"])
    assert trace is not None
    assert trace.git_remote_url == "https://github.com/example/x"
    assert (trace.git_branch, trace.git_ref) == ("main", "4d3c2b1a0f9e8d7c6b5a49382716050f4e3d2c1b")


async def test_a_non_git_directory_stores_null_git_fields(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    session_id, path = codex_session(home, plain)
    await rig.ingest(path, "codex")
    trace = await rig.store.get(session_id)
    assert trace is not None
    assert trace.git == trace.git.__class__()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\x01\x02garbage\n\xff\xfe\n", "binary"),
        (b"{not json\n[1,\n", "malformed"),
    ],
)
async def test_bad_files_are_counted_skipped_and_remembered(
    rig: Rig, home: Path, tmp_path: Path, content: bytes, reason: str
) -> None:
    """One bad file: a reason, a count, a remembered state; the next file flows."""
    project = home / ".claude" / "projects" / "p"
    project.mkdir(parents=True)
    bad = project / "bad.jsonl"
    bad.write_bytes(content)
    result = await rig.ingest(bad)
    assert result.error == reason
    assert rig.counts.errors_by_reason[reason] == 1
    state = await rig.store.file_state(str(bad))
    assert state is not None
    assert state.error == reason

    _, good = claude_session(home, tmp_path)
    assert (await rig.ingest(good)).captured == 1


async def test_vanished_file_is_skipped_not_an_error(rig: Rig, home: Path) -> None:
    result = await rig.ingest(home / ".claude" / "projects" / "p" / "gone.jsonl")
    assert result.error == "vanished"
    assert rig.counts.errors_total == 0
    assert rig.counts.skipped_by_reason["vanished"] == 1


async def test_known_directories_grow_with_captures(rig: Rig, home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    _, path = claude_session(home, repo)
    await rig.ingest(path)
    assert str(repo) in rig.ingestor.known_directories()


async def test_lone_surrogates_in_a_prompt_are_replaced_not_fatal(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """JSON may carry "\\ud800"; SQLite cannot store it. The title keeps the rest."""
    project = home / ".claude" / "projects" / "p"
    project.mkdir(parents=True)
    path = project / "s1.jsonl"
    path.write_text(
        '{"type": "user", "cwd": "/w", "message": {"content": "fix \\ud800 this"},'
        ' "timestamp": "2026-11-28T10:00:00Z"}\n'
    )
    assert (await rig.ingest(path)).captured == 1
    trace = await rig.store.get("s1")
    assert trace is not None
    assert trace.title == "fix ? this"


async def test_an_adapter_bug_on_one_file_is_contained(
    rig: Rig, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in an adapter is counted for that file; others flow."""
    _, odd = claude_session(home, tmp_path, "odd")
    good_id, good = claude_session(home, tmp_path, "good")
    adapter = rig.adapters["claude-code"]
    real_parse = adapter.parse

    def buggy(path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        if path == str(odd):
            raise KeyError("surprise")
        return real_parse(path, known_directories)

    monkeypatch.setattr(adapter, "parse", buggy)
    results = await rig.ingest_many([Item(adapter, str(odd)), Item(adapter, str(good))])
    assert [r.error for r in results] == ["adapter_error", None]
    assert rig.counts.errors_by_reason["adapter_error"] == 1
    assert await rig.store.get(good_id) is not None


async def test_a_store_locked_by_its_agent_is_not_remembered_as_read(
    rig: Rig, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`locked` is not bad input: nothing is recorded for the file (so a scan still reads
    it), it is counted as skipped, and the result asks for a retry."""
    _, path = claude_session(home, tmp_path, "held")
    adapter = rig.adapters["claude-code"]

    def locked(path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        raise ParseError("locked", f"{path} is locked by its agent")

    monkeypatch.setattr(adapter, "parse", locked)
    [result] = await rig.ingest_many([Item(adapter, str(path))])
    assert (result.error, result.retry) == ("locked", True)
    assert await rig.store.file_state(str(path)) is None
    assert rig.counts.skipped_by_reason["locked"] == 1
    assert rig.counts.errors_total == 0


async def test_two_files_of_one_new_session_in_one_batch_count_it_once(
    rig: Rig, home: Path, tmp_path: Path
) -> None:
    """Stores like Cline's keep one session in several files; read together, the session
    is one new trace, and the other file's read is an update."""
    session_id, path = codex_session(home, tmp_path)
    copy = path.with_name(f"rollout-2026-11-28T10-00-01-{session_id}.jsonl")
    copy.write_bytes(path.read_bytes())
    adapter = rig.adapters["codex"]
    results = await rig.ingest_many([Item(adapter, str(path)), Item(adapter, str(copy))])
    assert sorted((r.captured, r.updated) for r in results) == [(0, 1), (1, 0)]
    assert rig.counts.captured_total == 1
    assert await rig.store.count_by_agent() == {"codex": 1}
