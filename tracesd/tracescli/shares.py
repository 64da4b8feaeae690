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

from tracesd.store.database import Store

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
    share URL; one short transaction, only for rows whose value differs.

    Work in our database is in proportion to the shared traces, not to the CLI's rows (a
    pass may hand thousands): our shared ones come from their partial index, and only the
    ids the CLI shares that we do not have as such are looked up."""
    rows = await store.query("SELECT id, shared_url FROM traces WHERE shared_url IS NOT NULL")
    ours: dict[str, str] = {row[0]: row[1] for row in rows}
    unshared = [(None, i) for i in ours if i in theirs and theirs[i] is None]
    wanted = [i for i, url in theirs.items() if url is not None and ours.get(i) != url]
    have: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        have.update(
            row[0]
            for row in await store.query(f"SELECT id FROM traces WHERE id IN ({marks})", chunk)
        )
    changes = unshared + [(theirs[i], i) for i in wanted if i in have]
    if not changes:
        return Copied()
    await store.execute_many(
        "UPDATE traces SET shared_url = ? WHERE id = ? AND shared_url IS NOT ?",
        [(url, trace_id, url) for url, trace_id in changes],
    )
    return Copied(shared=len(changes) - len(unshared), unshared=len(unshared))
