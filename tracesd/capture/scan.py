"""Scans: find every session file under the agents' roots and ingest what changed.

Events are hints; scans are the truth. A scan walks each root (never following symlinks,
to directories or files, never deeper than the adapter's layout), compares each session
file's size and mtime with what the last read saw, and hands only new or changed files to the
dispatcher, the same path the watcher's events take. An unchanged tree costs one walk and
one query. A file an earlier run read racily (so soon after its last change that a
same-size write may have kept the mtime, models.racy) is read again: that run's events
for a later write may have been lost with it. The report adds up the ingest results of the
files the scan handed over, and names the directories newly found unreadable (the caller
counts them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from tracesd.capture.adapters import Adapter
from tracesd.capture.debounce import Dispatcher
from tracesd.capture.ingest import Item, Tally
from tracesd.models import FileStamp
from tracesd.store.database import Store
from tracesd.utf8 import encodable

log = structlog.get_logger("tracesd.scan")

#: files handed to the dispatcher between two yields to the event loop
SUBMIT_SLICE = 256


@dataclass(frozen=True, slots=True)
class Found:
    adapter: Adapter
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Report:
    discovered: int
    indexed: int
    errors: int
    skipped: int
    unchanged: int
    new: int
    updated: int
    duration_s: float
    #: directories this scan found it cannot list, not reported before (logged)
    unreadable: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, int | float]:
        return {
            "discovered": self.discovered,
            "indexed": self.indexed,
            "errors": self.errors,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "new": self.new,
            "updated": self.updated,
            "duration_s": round(self.duration_s, 3),
        }


def discover(
    adapters: Iterable[Adapter],
    roots: Iterable[str] | None = None,
    unreadable: list[str] | None = None,
) -> list[Found]:
    """Session files under the roots (all roots, or only those given). Runs in a thread.
    Directories that cannot be listed are appended to `unreadable` when it is given (the
    caller reports them), else logged."""
    only = {os.path.normpath(r) for r in roots} if roots is not None else None
    found: list[Found] = []
    refused: list[str] = [] if unreadable is None else unreadable
    for adapter in adapters:
        for root in adapter.roots():
            if only is not None and root not in only:
                continue
            found.extend(_walk(adapter, os.path.realpath(root), adapter.depth(root), refused))
    if unreadable is None:
        for path in refused:
            log.warning("scan.unreadable_directory", path=path)
    return found


def _walk(adapter: Adapter, root: str, max_depth: int, unreadable: list[str]) -> Iterable[Found]:
    stack: list[tuple[str, str, int]] = [(root, "", 1)]
    while stack:
        directory, prefix, depth = stack.pop()
        try:
            with os.scandir(directory) as entries:
                listing = list(entries)
        except OSError as exc:
            if directory != root or not isinstance(exc, FileNotFoundError):
                unreadable.append(directory)
            continue
        for entry in listing:
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < max_depth:
                        stack.append((entry.path, rel + "/", depth + 1))
                    continue
                # A symlink named like a session is not followed: it may point out of
                # the root (or at /proc/self/fd/0); ingest refuses it too. A FIFO, device
                # or socket named like one is handed on: ingest refuses it without opening
                # it, and logs and counts it (`not_a_file`) once, not on every scan.
                if not adapter.matches(rel) or entry.is_symlink():
                    continue
                st = entry.stat()
            except OSError:
                continue  # vanished or unreadable while we walked: the next event or scan retries
            if not encodable(entry.path):
                log.warning("scan.unencodable_path", path=entry.path)
                continue
            yield Found(adapter, entry.path, st.st_size, st.st_mtime_ns)


class Scanner:
    def __init__(
        self,
        adapters: list[Adapter],
        store: Store,
        dispatcher: Dispatcher,
    ) -> None:
        self._adapters = adapters
        self._store = store
        self._dispatcher = dispatcher
        #: racy reads before this are an earlier run's, whose events may be lost (ms)
        self._since = time.time_ns() // 1_000_000
        self.scans = 0
        self.running = False
        #: directories the last scan could not list (each reported once while it lasts)
        self._unreadable: set[str] = set()
        self.last_report: Report | None = None

    async def run(self, *, reason: str, roots: Iterable[str] | None = None) -> Report:
        self.running = True
        try:
            return await self._run(reason, roots)
        finally:
            self.running = False

    async def _run(self, reason: str, roots: Iterable[str] | None) -> Report:
        started = time.monotonic()
        unreadable: list[str] = []
        found = await asyncio.to_thread(discover, self._adapters, roots, unreadable)
        newly_unreadable = self._report_unreadable(unreadable, partial=roots is not None)
        stamps = await self._store.file_stamps(racy_before=self._since)
        todo = [f for f in found if _changed(f, stamps.get(f.path))]
        log.info("scan.started", reason=reason, discovered=len(found), changed=len(todo))
        states = await self._store.file_states_for(f.path for f in todo if f.path in stamps)
        tally = Tally()
        for n, item in enumerate(todo, 1):
            scanned = Item(item.adapter, item.path, scanned=True, state=states.get(item.path))
            self._dispatcher.submit_scanned(scanned, tally)
            if n % SUBMIT_SLICE == 0:
                await asyncio.sleep(0)  # a backfill of thousands must not hold the loop
        await self._dispatcher.idle()

        after = await self._store.file_stamps() if todo else stamps
        indexed = errors = skipped = 0
        for item in found:
            stamp = after.get(item.path)
            if stamp is None or (stamp.error is None and not stamp.has_traces):
                skipped += 1
            elif stamp.error is not None:
                errors += 1
            else:
                indexed += 1
        report = Report(
            discovered=len(found),
            indexed=indexed,
            errors=errors,
            skipped=skipped,
            unchanged=len(found) - len(todo),
            new=tally.captured,
            updated=tally.updated,
            duration_s=time.monotonic() - started,
            unreadable=newly_unreadable,
        )
        self.scans += 1
        self.last_report = report
        log.info("scan.finished", reason=reason, **report.as_dict())
        return report

    def _report_unreadable(self, unreadable: list[str], *, partial: bool) -> tuple[str, ...]:
        """Log a directory that cannot be listed once, not on every scan; it is retried by
        every scan, and reported again if it recovers and breaks again. The ones logged
        now (for the caller to count)."""
        now = set(unreadable)
        new = tuple(sorted(now - self._unreadable))
        for path in new:
            log.warning("scan.unreadable_directory", path=path)
        self._unreadable = self._unreadable | now if partial else now
        return new


def _changed(found: Found, stamp: FileStamp | None) -> bool:
    """New or changed since the last read, or read racily by an earlier run (see
    `models.racy`); a file that could not be read (permissions) is tried again by every
    scan, since fixing its mode does not change its mtime."""
    return (
        stamp is None
        or stamp.racy
        or stamp.size != found.size
        or stamp.mtime_ns != found.mtime_ns
        or stamp.error == "unreadable"
    )
