"""Which traces the user shared with the Traces CLI, copied into tracesd's database.

The CLI marks a shared trace in its own database (its `remote_url`, the share URL;
tracescli.Connection.shares reads it). The bridge hands what it read here, and each trace
of ours among those rows gets the CLI's value in `traces.shared_url`: set when the CLI
shared it, changed when it shared it again elsewhere, cleared when it unshared it. A trace
whose row the CLI no longer has (its cache keeps only the newest sessions) keeps what we
knew: a pruned row says nothing about sharing.

`[sync] scope = "shared"` sends exactly the traces with `shared_url` set (outbox.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tracesd.store import Store

#: ids per IN (...) of a read
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Copied:
    """What one copy changed in our database."""

    shared: int = 0
    unshared: int = 0

    @property
    def changed(self) -> int:
        return self.shared + self.unshared


async def copy_shares(store: Store, theirs: Mapping[str, str | None]) -> Copied:
    """Give each of our traces among `theirs` (CLI row id -> share URL or None) the CLI's
    share URL; one short transaction, only for rows whose value differs."""
    ids = list(theirs)
    ours: dict[str, str | None] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = await store.query(f"SELECT id, shared_url FROM traces WHERE id IN ({marks})", chunk)
        ours.update((row[0], row[1]) for row in rows)
    changes = [(theirs[i], i) for i, url in ours.items() if theirs[i] != url]
    if not changes:
        return Copied()
    await store.execute_many(
        "UPDATE traces SET shared_url = ? WHERE id = ? AND shared_url IS NOT ?",
        [(url, trace_id, url) for url, trace_id in changes],
    )
    shared = sum(url is not None for url, _ in changes)
    return Copied(shared=shared, unshared=len(changes) - shared)
