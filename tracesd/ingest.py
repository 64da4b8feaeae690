"""Ingest: one session file -> its traces in the store, each in one transaction.

Git context is captured when a trace is first seen (or when its working directory first
becomes known) and never replaced afterwards; later changes to the file update title,
preview, timestamp and source path only. A file that cannot be read is logged with its
reason, counted, remembered as failed at its current size and mtime, and skipped: one bad
file never stops the pipeline.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from tracesd.adapters import Adapter
from tracesd.errors import ParseError
from tracesd.gitinfo import GitResolver, scrub_url
from tracesd.models import GitInfo, Trace, TraceMeta
from tracesd.store import FileState, Store, now_ms

log = structlog.get_logger("tracesd.ingest")

#: parse failures that are a normal moment in a writer's life; logged at info, not warning
_TRANSIENT = frozenset({"vanished", "incomplete", "empty"})


@dataclass
class Stats:
    captured_total: int = 0
    updated_total: int = 0
    errors_total: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    last_capture_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What one ingest of one file did."""

    captured: int = 0
    updated: int = 0
    error: str | None = None


class Ingestor:
    def __init__(
        self,
        store: Store,
        git: GitResolver,
        *,
        exclude: Iterable[str] = (),
        directories: Iterable[str] = (),
    ) -> None:
        self._store = store
        self._git = git
        self._exclude = [_glob(p) for p in exclude]
        # Replaced, never mutated: adapters read it from worker threads.
        self._directories: frozenset[str] = frozenset(directories)
        self.stats = Stats()

    def known_directories(self) -> frozenset[str]:
        """Working directories of stored traces (a hint for adapters; safe from threads)."""
        return self._directories

    async def ingest(
        self,
        adapter: Adapter,
        path: str,
        *,
        state: FileState | None = None,
        state_known: bool = False,
        quiet: bool = False,
    ) -> Result:
        """Read `path` with `adapter` and store what changed. Never raises for bad input."""
        if not encodable(path):
            return self._failed(adapter, path, ParseError("bad_path", "path is not valid UTF-8"))
        try:
            st = os.stat(path)
        except OSError as exc:
            reason = "vanished" if isinstance(exc, FileNotFoundError) else "unreadable"
            return self._failed(adapter, path, ParseError(reason, f"cannot stat {path!r}"))
        if not state_known:
            state = await self._store.file_state(path)
        try:
            metas = await asyncio.to_thread(adapter.parse, path)
        except ParseError as exc:
            result = self._failed(adapter, path, exc)
            if state is None or (state.size, state.mtime_ns, state.error) != (
                st.st_size,
                st.st_mtime_ns,
                exc.reason,
            ):
                async with self._store.atomic() as tx:
                    await tx.set_file(
                        path,
                        agent_id=adapter.agent_id,
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        error=exc.reason,
                    )
            return result

        plans: list[tuple[TraceMeta, Trace | None, GitInfo | None]] = []
        for meta in metas:
            if meta.directory and self._excluded(meta.directory):
                self.stats.skipped_by_reason["excluded"] += 1
                continue
            existing = await self._store.get(meta.trace_id)
            git: GitInfo | None = None
            if meta.directory and (existing is None or existing.directory is None):
                git = await self._git.lookup(meta.directory)
                if git is None and meta.agent_git is not None:
                    git = _scrubbed(meta.agent_git)
            plans.append((meta, existing, git))

        file_changed = state is None or (state.size, state.mtime_ns, state.error) != (
            st.st_size,
            st.st_mtime_ns,
            None,
        )
        captured: list[Trace] = []
        updated: list[tuple[TraceMeta, dict[str, Any]]] = []
        for meta, existing, git in plans:
            if existing is None:
                captured.append(_new_trace(meta, git))
            elif changes := _changes(existing, meta, git):
                updated.append((meta, changes))
        if captured or updated or file_changed:
            async with self._store.atomic() as tx:
                for trace in captured:
                    await tx.upsert(trace)
                for meta, changes in updated:
                    await tx.update(meta.trace_id, **changes)
                await tx.set_file(
                    path,
                    agent_id=adapter.agent_id,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    trace_ids=[m.trace_id for m in metas],
                )
        self._account(captured, updated, quiet=quiet)
        return Result(captured=len(captured), updated=len(updated))

    def _account(
        self, captured: list[Trace], updated: list[tuple[TraceMeta, dict[str, Any]]], *, quiet: bool
    ) -> None:
        if not captured and not updated:
            return
        self.stats.captured_total += len(captured)
        self.stats.updated_total += len(updated)
        self.stats.last_capture_at = time.time()
        new_dirs = {t.directory for t in captured if t.directory} - self._directories
        for _meta, changes in updated:
            if changes.get("directory"):
                new_dirs.add(changes["directory"])
        if new_dirs:
            self._directories = self._directories | new_dirs
        emit = log.debug if quiet else log.info
        for trace in captured:
            emit(
                "ingest.captured",
                trace_id=trace.id,
                agent=trace.agent_id,
                directory=trace.directory,
                git_remote_url=trace.git_remote_url,
                git_branch=trace.git_branch,
                git_ref=trace.git_ref,
            )
        for meta, changes in updated:
            log.debug("ingest.updated", trace_id=meta.trace_id, fields=sorted(changes))

    def _failed(self, adapter: Adapter, path: str, exc: ParseError) -> Result:
        if exc.reason in _TRANSIENT:
            self.stats.skipped_by_reason[exc.reason] += 1
            log.info("ingest.skipped", agent=adapter.agent_id, path=path, reason=exc.reason)
        else:
            self.stats.errors_total += 1
            self.stats.errors_by_reason[exc.reason] += 1
            self.stats.last_error = str(exc)
            log.warning(
                "ingest.parse_failed",
                agent=adapter.agent_id,
                path=path,
                reason=exc.reason,
                error=str(exc),
            )
        return Result(error=exc.reason)

    def _excluded(self, directory: str) -> bool:
        return any(p.fullmatch(directory) for p in self._exclude)


def encodable(path: str) -> bool:
    """Paths that are not valid UTF-8 cannot be stored as text; agents never write them."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _new_trace(meta: TraceMeta, git: GitInfo | None) -> Trace:
    git = git or GitInfo()
    return Trace(
        id=meta.trace_id,
        agent_id=meta.agent_id,
        title=meta.title,
        preview=meta.preview,
        timestamp=meta.timestamp,
        directory=meta.directory,
        source_path=meta.source_path,
        git_remote_url=git.remote_url,
        git_branch=git.branch,
        git_ref=git.ref,
        created_at=meta.created or now_ms(),
    )


def _changes(existing: Trace, meta: TraceMeta, git: GitInfo | None) -> dict[str, Any]:
    """Fields of a stored trace that the file now says differently (never the git context,
    unless the working directory was unknown until now)."""
    changes: dict[str, Any] = {}
    for name in ("title", "preview", "timestamp", "source_path"):
        value = getattr(meta, name)
        if value is not None and value != getattr(existing, name):
            changes[name] = value
    if existing.directory is None and meta.directory:
        changes["directory"] = meta.directory
        if git is not None:
            changes.update(git_remote_url=git.remote_url, git_branch=git.branch, git_ref=git.ref)
    return changes


def _scrubbed(git: GitInfo) -> GitInfo:
    url = scrub_url(git.remote_url) if git.remote_url else None
    return GitInfo(remote_url=url or None, branch=git.branch, ref=git.ref)


def _glob(pattern: str) -> re.Pattern[str]:
    """A path glob: `**` crosses directories, `*` and `?` do not; `dir/**` matches dir too."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    regex = "".join(out)
    if regex.endswith("/.*"):
        regex = regex[: -len("/.*")] + "(/.*)?"
    return re.compile(regex)
