"""Plain values passed between the stages: adapters -> ingest -> store."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

TITLE_MAX = 200
PREVIEW_MAX = 500


@dataclass(frozen=True, slots=True)
class GitInfo:
    """Git context of a directory. Each field is looked up on its own and may be None."""

    remote_url: str | None = None
    branch: str | None = None
    ref: str | None = None

    @property
    def empty(self) -> bool:
        return self.remote_url is None and self.branch is None and self.ref is None


@dataclass(frozen=True, slots=True)
class TraceMeta:
    """What an adapter reads from one session: no git, no database."""

    agent_id: str
    trace_id: str
    source_path: str
    directory: str | None
    title: str | None
    preview: str | None
    #: last activity, ms since epoch
    timestamp: int | None
    #: session start, ms since epoch: what the Traces CLI sends as `sourceCreatedAt`
    created: int | None
    #: git context the agent recorded itself (Codex does); used only when the
    #: directory is no longer a repository we can ask.
    agent_git: GitInfo | None = None
    #: the session's model as the Traces CLI names it (its first: see the adapters);
    #: None when the session names none
    model: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line of a session file that a read passed over: why, and its byte range (`end`,
    past its newline, is None when the line runs beyond what was read)."""

    reason: str  # malformed, binary, oversize
    start: int
    end: int | None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What an adapter read from one file: its traces ([] when it holds none yet) and the
    lines it passed over, for ingest to report (one bad line never hides the rest, and is
    never silently dropped either)."""

    traces: list[TraceMeta]
    skipped: tuple[SkippedLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    """One row of the `traces` table (INTERFACE section 5)."""

    id: str
    agent_id: str
    title: str | None = None
    preview: str | None = None
    timestamp: int | None = None
    directory: str | None = None
    source_path: str | None = None
    shared_url: str | None = None
    shared_visibility: str | None = None
    git_remote_url: str | None = None
    git_branch: str | None = None
    git_ref: str | None = None
    created_at: int | None = None
    updated_at: int | None = None
    model: str | None = None

    @property
    def git(self) -> GitInfo:
        return GitInfo(self.git_remote_url, self.git_branch, self.git_ref)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


TRACE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Trace))


#: A read this soon after the file's last modification cannot vouch for what it read: on
#: a filesystem with coarse timestamps a later write of the same size can keep the same
#: mtime. Git calls such index entries "racily clean" and checks their content again; so
#: do scans (scan.py). A whole-second mtime means 1 s (HFS+, ext3) or 2 s (FAT) steps...
RACY_NS = 2_000_000_000
#: ...any other, at most a clock tick (ext4 before Linux 6.13's multigrain timestamps) or
#: exFAT's 10 ms.
RACY_FINE_NS = 20_000_000


def racy(mtime_ns: int, seen_at: int | None) -> bool:
    """Whether a read at `seen_at` (ms since epoch) of a file modified at `mtime_ns` is racy."""
    window = RACY_NS if mtime_ns % 1_000_000_000 == 0 else RACY_FINE_NS
    return seen_at is not None and seen_at * 1_000_000 - mtime_ns < window


@dataclass(frozen=True, slots=True)
class FileState:
    """What the last read of a session file saw."""

    path: str
    agent_id: str
    size: int
    mtime_ns: int
    trace_ids: tuple[str, ...]
    error: str | None
    #: when the file was stat'ed for that read, ms since epoch (None: at the write)
    seen_at: int | None = None

    @property
    def racy(self) -> bool:
        return racy(self.mtime_ns, self.seen_at)


class FileStamp(NamedTuple):
    """A FileState without its trace ids: what a scan compares a whole tree against."""

    size: int
    mtime_ns: int
    error: str | None
    has_traces: bool
    #: the read was racy (see RACY_NS) and made before the time the store was asked about
    racy: bool = False


@dataclass(frozen=True, slots=True)
class Capture:
    """What one ingest writes, committed together: new traces, changed fields, the read."""

    new: tuple[Trace, ...] = ()
    updates: tuple[tuple[str, dict[str, Any]], ...] = ()
    file: FileState | None = None


def now_ms() -> int:
    """Now, in the unit of every stored time: ms since the epoch."""
    return int(time.time() * 1000)


def iso(epoch_s: float | None) -> str | None:
    """Seconds since the epoch as ISO-8601 UTC with milliseconds (`...T09:10:00.118Z`)."""
    if epoch_s is None:
        return None
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
