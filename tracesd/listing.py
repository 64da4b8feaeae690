"""`tracesd list`: the traces a query finds in tracesd's database, with whether their
messages follow them, as a table or as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from tracesd import terminal
from tracesd.config import Config
from tracesd.models import Trace
from tracesd.store.database import Store

#: a followed trace's messages: (pending, sent)
Follow = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Query:
    agent: str | None = None
    repo: str | None = None
    #: an absolute directory: traces whose session ran in it or below
    directory: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Found:
    traces: list[Trace]
    #: the followed ones among them, by trace id
    followed: dict[str, Follow] = field(default_factory=dict)


async def find(config: Config, query: Query) -> Found:
    """The traces listed (none while the database does not exist), and which of them are
    followed."""
    if not config.storage.db_path.exists():
        return Found([])
    store = await Store.open(config.storage.db_path)
    try:
        traces = await store.list_traces(
            agent=query.agent, repo=query.repo, directory=query.directory, limit=query.limit
        )
        if not config.sync.follows_messages:
            return Found(traces)
        # message follow's modules load only where it is on (the daemon's RSS otherwise)
        from tracesd.messages.readers.registry import READERS
        from tracesd.store.follow import FollowStore

        follow = FollowStore(store, scope=config.sync.scope)
        return Found(traces, await follow.per_trace([t.id for t in traces], READERS.keys()))
    finally:
        await store.close()


def as_json(found: Found) -> str:
    """`list --json`: each trace's row, and whether its messages follow it."""
    return json.dumps({"traces": [_listed(t, found.followed.get(t.id)) for t in found.traces]})


def _listed(trace: Trace, follow: Follow | None) -> dict[str, object]:
    messages = None if follow is None else {"pending": follow[0], "sent": follow[1]}
    return {**trace.as_dict(), "followed": follow is not None, "messages": messages}


def table(found: Found) -> list[str]:
    """The `list` table: one line a trace, columns as wide as their widest value."""
    rows: list[tuple[str, ...]] = [
        ("WHEN", "AGENT", "ID", "BRANCH", "REF", "REPOSITORY", "FOLLOWED", "TITLE")
    ]
    rows += [_row(terminal.value(t), found.followed.get(t.id)) for t in found.traces]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]


def _row(trace: Trace, follow: Follow | None) -> tuple[str, ...]:
    when = (
        datetime.fromtimestamp(trace.timestamp / 1000).strftime("%Y-%m-%d %H:%M")
        if trace.timestamp
        else "-"
    )
    repo = trace.git_remote_url or "-"
    for prefix in ("https://", "http://", "ssh://", "git@"):
        repo = repo.removeprefix(prefix)
    title = trace.title or ""
    return (
        when,
        trace.agent_id,
        trace.id[:8],
        trace.git_branch or "-",
        (trace.git_ref or "-")[:12],
        repo,
        "-" if follow is None else "yes" if not follow[0] else f"yes, {follow[0]} pending",
        title[:80] + ("…" if len(title) > 80 else ""),
    )
