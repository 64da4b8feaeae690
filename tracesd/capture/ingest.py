"""Ingest: session files -> their traces in the store.

Files come in batches (one file for a live event, dozens during a scan) so that the hops
between threads are paid per batch: one thread hop parses every file, one query each
fetches what the store knew, git runs once per distinct directory, and the writes join
one group-commit transaction. Each file's writes still commit or fail as a unit.

Git context is captured when a trace is first seen (or when its working directory first
becomes known) and never replaced afterwards; later changes to the file update title,
preview, timestamp and source path only. A file that cannot be read is logged with its
reason, counted, remembered as failed at its current size and mtime, and skipped: one bad
file never stops the pipeline.

Everything flows through arguments and return values: a batch is a list of `Item`s (a
scan's carry the file state it already read), each file's `Result` says what happened
(stored, skipped and why, lines passed over); the caller adds them up (`counts.py`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from tracesd.capture.adapters import Adapter
from tracesd.capture.adapters._files import MAX_LINE
from tracesd.capture.exclude import Exclusions
from tracesd.errors import ParseError, RowRejected
from tracesd.git.context import GitResolver
from tracesd.models import Capture, FileState, GitInfo, SkippedLine, Trace, TraceMeta, racy
from tracesd.store import rows
from tracesd.store.database import Store
from tracesd.utf8 import encodable

log = structlog.get_logger("tracesd.ingest")

#: parse failures that are a normal moment in a writer's life; logged at info, not warning
_TRANSIENT = frozenset({"vanished", "incomplete", "empty", "locked"})
#: the agent holds its store locked: nothing was read, so nothing is recorded; retry later
_RETRY = frozenset({"locked"})


@dataclass(frozen=True, slots=True)
class Item:
    """One file to read. A scan's item carries what the store knew of the file (`state`,
    None: never seen; read for the whole tree in one query) in place of a query per file,
    and its captures are logged at debug level: a backfill is not news."""

    adapter: Adapter
    path: str
    scanned: bool = False
    state: FileState | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What one ingest of one file did; the caller adds them up (`counts.CaptureCounts`)."""

    captured: int = 0
    updated: int = 0
    #: why the file was not read (None: it was)
    error: str | None = None
    #: the error's message when it counts as an error: not a transient reason, and not the
    #: same failure as the last read's (counted then)
    failure: str | None = None
    #: what was passed over, counted by reason: traces in excluded directories
    #: (`excluded`), a transient read failure (`vanished`, `locked`, ...), lines newly
    #: skipped (`malformed_line`, ...)
    skipped: tuple[tuple[str, int], ...] = ()
    #: the traces of a file whose content changed since its last read (their messages
    #: are read next: message follow)
    changed: tuple[str, ...] = ()

    @property
    def retry(self) -> bool:
        """Read it again later (the dispatcher does): the file could not be read now."""
        return self.error in _RETRY


@dataclass(slots=True)
class Tally:
    """Results added up as they come, none of them kept (a scan's report: its thousands of
    files cost two integers, not a Result each)."""

    captured: int = 0
    updated: int = 0

    def add(self, result: Result) -> None:
        self.captured += result.captured
        self.updated += result.updated


@dataclass(slots=True)
class _File:
    adapter: Adapter
    path: str
    scanned: bool
    state: FileState | None = None
    seen: tuple[int, int] = (0, 0)
    #: when it was stat'ed, ms since epoch
    seen_at: int | None = None
    metas: list[TraceMeta] = field(default_factory=list)
    error: ParseError | None = None
    skipped: tuple[SkippedLine, ...] = ()


class Ingestor:
    def __init__(
        self,
        store: Store,
        git: GitResolver,
        *,
        exclude: Iterable[str] = (),
        directories: Iterable[str] = (),
        on_stored: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._store = store
        #: called with the ids of traces just stored or changed, as each file's write
        #: commits (the Traces CLI bridge fills them in; sync runs early)
        self._on_stored = on_stored
        self._git = git
        self._excluded = Exclusions(exclude).excluded
        # Replaced, never mutated: adapters read it from worker threads.
        self._directories: frozenset[str] = frozenset(directories)
        # Parsing is Python holding the GIL: batches parse one at a time (while others
        # wait on git or the database). In parallel, each system call of one thread waits
        # for the GIL behind the others: scanning 1,000 Copilot sessions took 0.88 s with
        # four batches parsing at once, 0.65 s with one.
        self._parsing = asyncio.Semaphore(1)

    def known_directories(self) -> frozenset[str]:
        """Working directories of stored traces (handed to adapters as a hint)."""
        return self._directories

    async def ingest(self, adapter: Adapter, path: str) -> Result:
        """Read one file and store what changed (see `ingest_many`)."""
        [result] = await self.ingest_many([Item(adapter, path)])
        return result

    async def ingest_many(self, items: Sequence[Item]) -> list[Result]:
        """Read each file and store what changed; one Result per item, in order. Never
        raises for bad input; StoreError (the database itself is busy or broken) is the
        caller's to handle."""
        files = [_File(i.adapter, i.path, i.scanned, i.state) for i in items]
        unknown = [f.path for f in files if not f.scanned and encodable(f.path)]
        states = await self._store.file_states_for(unknown) if unknown else {}
        for f in files:
            if not f.scanned:
                f.state = states.get(f.path)
        async with self._parsing:
            await asyncio.to_thread(_read_all, files, self._directories)

        ids = [m.trace_id for f in files for m in f.metas]
        existing = await self._store.get_many(ids) if ids else {}
        wanted = {
            m.directory
            for f in files
            for m in f.metas
            if m.directory
            and not self._excluded(m.directory)
            and (m.trace_id not in existing or existing[m.trace_id].directory is None)
        }
        git = await self._git.lookup_many(wanted)
        return list(await asyncio.gather(*(self._store_file(f, existing, git) for f in files)))

    async def _store_file(
        self, f: _File, existing: dict[str, Trace], git: dict[str, GitInfo | None]
    ) -> Result:
        state = f.state
        skipped = self._report_skipped(f)
        if f.error is not None:
            if (
                f.error.reason not in _RETRY
                and f.seen != (0, 0)
                and (
                    state is None
                    or (state.size, state.mtime_ns, state.error) != (*f.seen, f.error.reason)
                )
            ):
                await self._store.write(Capture(file=self._file_state(f, error=f.error.reason)))
            return self._failed(f, f.error, skipped)

        captured: list[Trace] = []
        updated: list[tuple[str, dict[str, Any]]] = []
        excluded = 0
        for meta in f.metas:
            if meta.directory and self._excluded(meta.directory):
                excluded += 1
                continue
            stored = existing.get(meta.trace_id)
            context = git.get(meta.directory) if meta.directory else None
            if context is None and meta.agent_git is not None:
                context = rows.scrubbed(meta.agent_git)
            if stored is None:
                captured.append(rows.new_trace(meta, context))
            elif changes := rows.changes(stored, meta, context):
                updated.append((meta.trace_id, changes))
        if excluded:
            skipped += (("excluded", excluded),)

        # A racy earlier read (models.RACY_NS) is recorded again once a read is not racy,
        # so that scans of later runs trust it.
        unchanged = (
            state is not None
            and (state.size, state.mtime_ns, state.error) == (*f.seen, None)
            and (not state.racy or racy(f.seen[1], f.seen_at))
        )
        if captured or updated or not unchanged:
            ids = tuple(m.trace_id for m in f.metas)
            capture = Capture(tuple(captured), tuple(updated), self._file_state(f, trace_ids=ids))
            try:
                inserted = await self._store.write(capture)
            except RowRejected as exc:
                await self._store.write(Capture(file=self._file_state(f, error="rejected")))
                return self._failed(f, ParseError("rejected", str(exc)), skipped)
            # Another file of the same session (or another program) may have stored a
            # trace first: it was merged into, and counts as an update.
            merged = [t for t in captured if t.id not in inserted]
            captured = [t for t in captured if t.id in inserted]
            updated += [(t.id, {}) for t in merged]
        self._account(captured, updated, quiet=f.scanned)
        changed = () if unchanged else tuple(m.trace_id for m in f.metas)
        return Result(
            captured=len(captured), updated=len(updated), skipped=skipped, changed=changed
        )

    def _report_skipped(self, f: _File) -> tuple[tuple[str, int], ...]:
        """Log the lines a read passed over, once: only those the last read of this file
        could not have known (a file re-read as it grows reports each bad line once, not
        on every read). Their count by reason (`malformed_line`, ...)."""
        if not f.skipped:
            return ()
        seen_before = f.state.size if f.state is not None else 0
        by_reason: dict[str, list[SkippedLine]] = {}
        for line in dict.fromkeys(f.skipped):
            # A bad line is known once its newline is read; an oversize one once more
            # than MAX_LINE of it is.
            known_at = line.start + MAX_LINE + 1 if line.reason == "oversize" else line.end
            if known_at is None or known_at > seen_before:
                by_reason.setdefault(line.reason, []).append(line)
        counts: list[tuple[str, int]] = []
        for reason, lines in sorted(by_reason.items()):
            counts.append((f"{reason}_line", len(lines)))
            log.info(
                "ingest.lines_skipped",
                agent=f.adapter.agent_id,
                path=f.path,
                reason=reason,
                lines=len(lines),
                first_offset=lines[0].start,
                first_end=lines[0].end,
            )
        return tuple(counts)

    def _file_state(
        self, f: _File, *, trace_ids: tuple[str, ...] = (), error: str | None = None
    ) -> FileState:
        return FileState(
            f.path, f.adapter.agent_id, f.seen[0], f.seen[1], trace_ids, error, f.seen_at
        )

    def _account(
        self, captured: list[Trace], updated: list[tuple[str, dict[str, Any]]], *, quiet: bool
    ) -> None:
        if not captured and not updated:
            return
        new_dirs = {t.directory for t in captured if t.directory}
        new_dirs |= {c["directory"] for _, c in updated if c.get("directory")}
        if new_dirs - self._directories:
            self._directories = self._directories | new_dirs
        if self._on_stored is not None:
            self._on_stored([t.id for t in captured] + [i for i, _ in updated])
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
        for trace_id, changes in updated:
            log.debug("ingest.updated", trace_id=trace_id, fields=sorted(changes))

    def _failed(self, f: _File, exc: ParseError, skipped: tuple[tuple[str, int], ...]) -> Result:
        agent, path = f.adapter.agent_id, f.path
        if f.state is not None and f.state.error == exc.reason:
            # Read again (it changed, or a periodic scan retries it) and still bad for the
            # same reason: already logged and counted once.
            log.debug("ingest.still_failing", agent=agent, path=path, reason=exc.reason)
            return Result(error=exc.reason, skipped=skipped)
        if exc.reason in _TRANSIENT:
            log.info("ingest.skipped", agent=agent, path=path, reason=exc.reason)
            return Result(error=exc.reason, skipped=(*skipped, (exc.reason, 1)))
        log.warning(
            "ingest.parse_failed", agent=agent, path=path, reason=exc.reason, error=str(exc)
        )
        return Result(error=exc.reason, failure=str(exc), skipped=skipped)


def _read_all(files: list[_File], known_directories: frozenset[str]) -> None:
    """Stat and parse each file (on a worker thread). Never raises for one file's sake."""
    for f in files:
        if not encodable(f.path):
            f.error = ParseError("bad_path", "path is not valid UTF-8")
            continue
        f.seen_at = time.time_ns() // 1_000_000  # before the stat: racy when in doubt
        try:
            st = os.stat(f.path)
        except OSError as exc:
            reason = "vanished" if isinstance(exc, FileNotFoundError) else "unreadable"
            f.error = ParseError(reason, f"cannot stat {f.path!r}: {exc.strerror}")
            continue
        # Stat before reading: a write in between makes the next scan read it again,
        # never the other way round.
        f.seen = (st.st_size, st.st_mtime_ns)
        try:
            parsed = f.adapter.parse(f.path, known_directories)
        except ParseError as exc:
            f.error = exc
            f.skipped = exc.skipped
        except Exception as exc:
            # An adapter bug on one odd file must not crash-loop the daemon on every start:
            # it is reported loudly, with its traceback, and contained like bad input.
            log.exception("ingest.adapter_failed", agent=f.adapter.agent_id, path=f.path)
            f.error = ParseError("adapter_error", f"{type(exc).__name__}: {exc}")
        else:
            f.skipped = parsed.skipped
            f.metas = [rows.storable(m) for m in parsed.traces]
