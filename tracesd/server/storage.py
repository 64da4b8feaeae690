"""The reference server's storage: one interface, two engines (SQLite and PostgreSQL).

The handlers use a `Storage` and never know which engine is behind it: `open_storage`
picks it from the target (a `postgresql://` or `postgres://` URL opens PostgreSQL,
anything else is a SQLite file). Both engines keep the same rules, which live here as
pure functions so they cannot drift apart:

Rows are kept in API terms at the storage's edge: an upsert takes validated request
objects (camelCase, externalId included) and returns stored details (TraceDetail fields
plus the internal `namespaceId`), so the handlers never see a column name.

Ownership: an externalId belongs to the namespace that first stored it. Every read, write
and delete names the caller's namespace, and a trace of another namespace is treated as
absent (a write to it changes nothing and answers None).

A repository URL is stored in canonical form (tracesd.git.remote_url, INTERFACE section 5),
and the `gitRemoteUrl` filter compares canonical forms.

Upsert rule (`merge`): fields left out keep their stored value; createdAt and the server's
`id` are set once; updatedAt moves (strictly forward) only when some field value actually
changes, so re-sending the same body is a no-op that answers the same detail.

Each trace has an insertion sequence (`seq`), assigned once when the externalId is first
stored. Listings run newest first by `seq` and page with "seq below N", so a page boundary
never moves when traces are added or updated between two pages.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

from tracesd.git.redact import scrub_url
from tracesd.git.remote_url import canonical
from tracesd.server.auth import ANONYMOUS
from tracesd.server.message_rules import Message

__all__ = [
    "SENT",
    "Detail",
    "Item",
    "Message",
    "Page",
    "Storage",
    "engine_of",
    "merge",
    "open_storage",
    "redacted",
]

#: (API field, column) of every field a client sends
FIELDS: tuple[tuple[str, str], ...] = (
    ("externalId", "external_id"),
    ("agentId", "agent_id"),
    ("title", "title"),
    ("preview", "preview"),
    ("timestamp", "timestamp"),
    ("projectPath", "project_path"),
    ("projectName", "project_name"),
    ("model", "model"),
    ("tokenUsage", "token_usage"),
    ("visibility", "visibility"),
    ("gitRemoteUrl", "git_remote_url"),
    ("gitBranch", "git_branch"),
    ("gitRef", "git_ref"),
    ("relatedTo", "related_to"),
    ("relationshipType", "relationship_type"),
    ("sourceCreatedAt", "source_created_at"),
)
SENT = frozenset(name for name, _ in FIELDS)
_JSON_FIELDS = frozenset({"tokenUsage"})
#: what a stored detail holds, in order: the server's fields around the client's
WRITTEN = ("id", "namespaceId", *(name for name, _ in FIELDS), "createdAt", "updatedAt")
_NAMES = (*WRITTEN, "messageCount")
#: the columns of WRITTEN, in its order (the same names on both engines)
COLUMNS = (
    "id",
    "namespace_id",
    *(column for _, column in FIELDS),
    "created_at",
    "updated_at",
)
#: the columns of a detail as `detail` reads them (after seq)
READ_COLUMNS = (*COLUMNS, "message_count")
#: the columns an update never changes
KEPT = ("id", "namespace_id", "external_id", "created_at")

Detail = dict[str, Any]
"""A stored trace: API field names (and `namespaceId`), fields without a value left out."""
Item = tuple[str, Mapping[str, Any]]
"""(namespace id, validated request object with externalId)"""

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class Page:
    traces: list[Detail]
    #: pass as `before` for the next page; None on the last page
    next_before: int | None


class Storage(Protocol):
    """What the handlers need from a database; both engines raise StoreError (busy: worth
    retrying, answered 503) and nothing else of their own."""

    async def upsert_many(
        self, items: Sequence[Mapping[str, Any]], namespace: str = ...
    ) -> list[Detail | None]:
        """Store validated BatchItems in `namespace`, in order, all or none; the detail
        after each item (None: the externalId belongs to another namespace)."""
        ...

    async def delete(self, external_id: str, namespace: str) -> bool:
        """Delete a trace of `namespace` with its messages; False when there is none."""
        ...

    async def upsert_messages(
        self, external_id: str, namespace: str, entries: Sequence[Mapping[str, Any]]
    ) -> int | None:
        """Merge message entries (message_rules); how many distinct messages they name,
        or None when there is no such trace."""
        ...

    async def put_message(
        self, external_id: str, namespace: str, entry: Mapping[str, Any]
    ) -> Message | None:
        """Merge one entry; the message as stored (with parts), or None: no such trace."""
        ...

    async def get(self, external_id: str, namespace: str = ...) -> Detail | None: ...

    async def read_messages(
        self, external_id: str, namespace: str, *, parts: bool
    ) -> list[Message] | None:
        """A trace's messages in order (with their parts when `parts`); None: no trace."""
        ...

    async def list_traces(
        self,
        namespace: str = ...,
        *,
        git_remote_url: str | None = None,
        git_branch: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Page:
        """A namespace's traces, newest first (by insertion), exact-match filters,
        `before`: a previous next_before."""
        ...

    async def close(self) -> None:
        """Finish what was accepted, then release the database (idempotent)."""
        ...


def engine_of(target: str) -> str:
    """ "postgresql" for a PostgreSQL URL, "sqlite" for anything else (a file path)."""
    return "postgresql" if target.lower().startswith(POSTGRES_SCHEMES) else "sqlite"


def redacted(target: str) -> str:
    """The target as it may be logged or shown: a URL without its password (in the user
    info or a `password`-like query parameter), a path as it is."""
    if engine_of(target) != "postgresql":
        return target
    try:
        parts = urlsplit(target)
    except ValueError:
        return scrub_url(target)  # keeps no credentials, whatever the text
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = "&".join(
        pair for pair in parts.query.split("&") if "password" not in pair.partition("=")[0].lower()
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


async def open_storage(
    target: str, *, legacy_namespace: str = ANONYMOUS.namespace_id, pool_size: int = 10
) -> Storage:
    """The storage at `target`: a PostgreSQL URL (any libpq URI, `pool_size` connections at
    most) or a SQLite file path (created 0600 in a 0700 directory). Traces of an earlier
    SQLite layout, which had no owner, go to `legacy_namespace`. Raises StoreError."""
    if engine_of(target) == "postgresql":
        from tracesd.server.postgres_store import PostgresStorage

        return await PostgresStorage.open(target, pool_size=pool_size)
    from pathlib import Path

    from tracesd.server.sqlite_store import SQLiteStorage

    return await SQLiteStorage.open(Path(target), legacy_namespace=legacy_namespace)


def merge(
    stored: Mapping[str, Detail], items: Sequence[Item], now: int
) -> tuple[list[Detail | None], list[Detail]]:
    """Apply items to stored details: (the detail after each item, None where another
    namespace owns it; the details to write)."""
    current = dict(stored)
    changed: dict[str, Detail] = {}
    details: list[Detail | None] = []
    for namespace, raw in items:
        item = _canonical(raw)
        external_id = item["externalId"]
        old = current.get(external_id)
        if old is None:
            new = {**item, "id": uuid.uuid4().hex, "namespaceId": namespace}
            new = _ordered({**new, "createdAt": now, "updatedAt": now, "messageCount": 0})
        elif old["namespaceId"] != namespace:
            details.append(None)
            continue
        elif any(old.get(name) != value for name, value in item.items()):
            new = _ordered({**old, **item, "updatedAt": max(now, old["updatedAt"] + 1)})
        else:
            new = old
        if new is not old:
            current[external_id] = changed[external_id] = new
        details.append(new)
    return details, list(changed.values())


def _canonical(item: Mapping[str, Any]) -> Mapping[str, Any]:
    url = item.get("gitRemoteUrl")
    return {**item, "gitRemoteUrl": canonical_url(url)} if isinstance(url, str) else item


#: a server sees few repositories and each many times: their canonical forms, remembered
#: (clients send canonical URLs, so the keys rarely hold anything canonical() would strip)
canonical_url = functools.lru_cache(maxsize=1024)(canonical)


def listing_conditions(
    namespace: str,
    *,
    git_remote_url: str | None,
    git_branch: str | None,
    agent_id: str | None,
    before: int | None,
) -> list[tuple[str, Any]]:
    """A listing's WHERE conditions as (column and operator, value), in order: the caller's
    namespace, the exact-match filters (a repository in canonical form), the cursor."""
    conditions: list[tuple[str, Any]] = [("namespace_id =", namespace)]
    if git_remote_url is not None:
        conditions.append(("git_remote_url =", canonical_url(git_remote_url)))
    if git_branch is not None:
        conditions.append(("git_branch =", git_branch))
    if agent_id is not None:
        conditions.append(("agent_id =", agent_id))
    if before is not None:
        conditions.append(("seq <", before))
    return conditions


def page(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """A listing's page from up to `limit` + 1 rows (seq, then READ_COLUMNS), newest first."""
    more = len(rows) > limit
    shown = rows[:limit]
    return Page([selected(r) for r in shown], shown[-1][0] if more else None)


def selected(values: Sequence[Any]) -> Detail:
    """A selected row (seq, then READ_COLUMNS) as a stored detail."""
    return detail(values[1:])


def detail(values: Sequence[Any]) -> Detail:
    """The values of READ_COLUMNS as a stored detail."""
    found: Detail = {}
    for name, value in zip(_NAMES, values, strict=True):
        if value is not None:
            found[name] = json.loads(value) if name in _JSON_FIELDS else number(value)
    return found


def number(value: Any) -> Any:
    """A NUMERIC read back as JSON has it: integral values as int, others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def row(detail: Detail) -> list[Any]:
    """A detail as the values of WRITTEN (JSON fields as text)."""
    return [
        _json(detail.get(name)) if name in _JSON_FIELDS else detail.get(name) for name in WRITTEN
    ]


def _ordered(values: Mapping[str, Any]) -> Detail:
    """A detail with its fields in the stored order, as a stored row reads back."""
    return {name: values[name] for name in _NAMES if name in values}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))
