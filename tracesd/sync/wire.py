"""The wire: what a trace becomes on its way to the Traces API, and what an answer means.

Out: a trace becomes a BatchItem (openapi.json), the fields the real Traces CLI sends for it
(`payload`), encoded once (`Outgoing`); a batch request holds at most MAX_BATCH_BYTES of them
(`cut`). SYNCED_FIELDS are the columns those fields come from.

Back: an answer (status, Retry-After, body; every value in it read by answers.py) becomes
typed outcomes, here and nowhere else:

    status                      for one trace       for a whole request
    2xx                         Stored              one outcome per trace
    401, 403                    KeyRefused          KeyRefused
    413                         Refused             TooLarge (split the batch)
    another 4xx but 408/425/429 Refused             Refused (bisect to the culprit)
    404/405 on the batch URL                        NoBatchEndpoint (PUT each trace)
    anything else, or malformed NotNow              NotNow, with the server's hint

A trace Refused is failed until it changes; NotNow and KeyRefused leave it pending.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from tracesd.errors import MalformedAnswer
from tracesd.git.remote_url import canonical_or_none
from tracesd.models import Trace
from tracesd.store.outbox import Pending
from tracesd.sync.answers import batch_results, error_message, retry_after, retry_at

#: the columns of `traces` whose changes the server must see: those `payload` reads (the
#: Traces CLI's PUT field set) and `shared_url`, so a trace that becomes shared is sent.
#: Never `preview` or `timestamp` (the CLI sends neither) nor the visibility (the user's).
#: The outbox's trigger watches them; each migration that builds the trigger freezes its own
#: copy (migrations.py), and tests/test_migrations.py fails while the latest differs.
SYNCED_FIELDS = (
    "agent_id",
    "title",
    "directory",
    "model",
    "created_at",
    "shared_url",
    "git_remote_url",
    "git_branch",
    "git_ref",
)

#: a batch request is cut before its JSON reaches this size
MAX_BATCH_BYTES = 1024 * 1024
#: the real Traces CLI's title rule (0.6.31, `PB`): at most this many UTF-16 code units...
TITLE_CUT = 100
#: ...the longer ones cut to TITLE_CUT - 3 and this appended
TITLE_ELLIPSIS = "..."
#: statuses that mean "not now" (besides 5xx): a request timeout, too early, too many
RETRYABLE = frozenset({408, 425, 429})
#: statuses that mean the API key was refused
AUTH = frozenset({401, 403})
#: statuses of a URL with no such endpoint
NO_ENDPOINT = frozenset({404, 405})

# ------------------------------------------------------------------------------- out


def payload(trace: Trace, *, send_titles: bool) -> dict[str, Any]:
    """The BatchItem (openapi.json) for a trace: the real Traces CLI's PUT field set
    (docs/traces-cli-0.6.31.md (f)), camelCase, a field without a value left out (never
    null), so the server keeps what it has. Never `visibility` nor `targetNamespaceId`
    (sharing is the user's decision, taken in the CLI); never `preview` nor `timestamp`
    (the CLI sends neither: less text leaves the machine).

    A trace the CLI has shared (`shared_url` set) gets its git context only: the CLI set
    title, model, project and start itself when it shared it, and the server keeps the
    fields left out, so we never overwrite the CLI's values with ours. Any other trace
    (`[sync] scope = "all"`) gets what the CLI would send for it; its title only with
    `send_titles`, cut as the CLI cuts."""
    item: dict[str, Any] = {"externalId": trace.id, "agentId": trace.agent_id}
    if trace.shared_url is None:
        title = cli_title(trace.title) if send_titles else None
        directory = trace.directory or None
        fields: dict[str, Any] = {
            "title": title,
            "projectPath": directory,
            "projectName": project_name(directory),
            "model": trace.model,
            "sourceCreatedAt": trace.created_at,
        }
        item.update((key, value) for key, value in fields.items() if value is not None)
    git = {
        "gitRemoteUrl": _canonical(trace.git_remote_url),
        "gitBranch": trace.git_branch,
        "gitRef": trace.git_ref,
    }
    item.update((key, value) for key, value in git.items() if value is not None)
    return item


def cli_title(title: str | None) -> str | None:
    """A title as the real CLI cuts one: whole when at most TITLE_CUT UTF-16 code units
    (JavaScript's `length`), else its first TITLE_CUT - 3 units and "..." (a surrogate pair
    the cut would split is dropped whole: a lone half is not text)."""
    if not title:
        return None
    units = title.encode("utf-16-le", "surrogatepass")
    if len(units) <= 2 * TITLE_CUT:
        return title
    kept = units[: 2 * (TITLE_CUT - len(TITLE_ELLIPSIS))]
    if 0xD800 <= int.from_bytes(kept[-2:], "little") <= 0xDBFF:
        kept = kept[:-2]
    return kept.decode("utf-16-le", "surrogatepass") + TITLE_ELLIPSIS


#: stored URLs are canonical already (capture and migration 5 make them so); this is the
#: guarantee for any other, and a sync sends the same few repositories many times
_canonical = functools.lru_cache(maxsize=1024)(canonical_or_none)


def project_name(directory: str | None) -> str | None:
    """The last component of a directory, as the real CLI computes `projectName` (`fht`):
    trailing separators dropped, `/` and `\\` both separators; None when nothing is left."""
    if not directory:
        return None
    trimmed = directory.rstrip("/\\")
    if not trimmed:
        return None
    return re.split(r"[/\\]+", trimmed)[-1] or None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One trace to send: its BatchItem, and that item as JSON, encoded once (batches are
    measured with it and the batch request is made of it)."""

    external_id: str
    fields: dict[str, Any]
    encoded: bytes

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Outgoing:
        return cls(str(fields["externalId"]), fields, _json(fields))


#: claimed traces with what is sent for each, in order
Batch = list[tuple[Pending, Outgoing]]


def cut(pending: list[Pending], *, send_titles: bool) -> Batch:
    """Payloads for the claimed traces, stopping before the request passes MAX_BATCH_BYTES
    (always at least one: a lone oversize trace is the server's to refuse)."""
    batch: Batch = []
    size = 0
    for item in pending:
        outgoing = Outgoing.of(payload(item.trace, send_titles=send_titles))
        size += len(outgoing.encoded) + 1
        if batch and size > MAX_BATCH_BYTES:
            break
        batch.append((item, outgoing))
    return batch


def batch_body(items: list[Outgoing]) -> bytes:
    """The body of POST /v1/traces/batch."""
    return b'{"traces":[' + b",".join(i.encoded for i in items) + b"]}"


def put_body(item: Outgoing) -> bytes:
    """The body of PUT /v1/traces/{externalId}: the item without its id (it is in the URL)."""
    return _json({k: v for k, v in item.fields.items() if k != "externalId"})


def messages_body(entries: list[str]) -> bytes:
    """The body of POST /v1/traces/{externalId}/messages/batch, from the entries' JSON."""
    return ('{"idScheme":"v2","messages":[' + ",".join(entries) + "]}").encode()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------------------------ back


@dataclass(frozen=True, slots=True)
class Stored:
    """The server stored the version sent."""


STORED = Stored()


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused for good: the trace is failed until it changes (it blocks no other)."""

    status: int
    message: str

    @property
    def reason(self) -> str:
        """What the outbox keeps and `tracesd status` shows."""
        return f"HTTP {self.status}: {self.message}"


@dataclass(frozen=True, slots=True)
class NotNow:
    """Worth trying later: the network, a timeout, 408/425/429, 5xx, 1xx/3xx, an answer that
    does not parse. `retry_after`: the server's hint, in seconds."""

    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRefused:
    """401/403: the API key was refused. Sync pauses; no trace is failed."""

    message: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """413 for a whole request: split it."""

    message: str


@dataclass(frozen=True, slots=True)
class NoBatchEndpoint:
    """404/405 on the batch endpoint: send one PUT per trace."""


@dataclass(frozen=True, slots=True)
class TraceMissing:
    """404 to a message batch: the server no longer has the trace; it is sent again first."""


#: what the server said about one trace
Outcome = Stored | Refused | NotNow | KeyRefused
#: what an answer to a batch request says: one outcome per trace, in order, or one that
#: concerns the request as a whole
BatchAnswer = list[Outcome] | NotNow | KeyRefused | Refused | TooLarge | NoBatchEndpoint


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as the client read it (the body bounded); nothing in it trusted yet."""

    status: int
    retry_after: str | None
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def batch_answer(sent: list[str], answer: Answer) -> BatchAnswer:
    """What the answer to a batch of the traces `sent` (their external ids, in order) says."""
    if answer.status in NO_ENDPOINT:
        return NoBatchEndpoint()
    if not answer.ok:
        return _refusal(answer)
    try:
        results = batch_results(sent, answer.body)
    except MalformedAnswer as exc:
        return NotNow(str(exc))
    return [_trace_outcome(r.status, r.message) for r in results]


def put_answer(answer: Answer, *, url: str) -> Outcome:
    """What the answer to the PUT of one trace says about it (a 413: refused for good, the
    trace alone is too large). 404/405 mean the URL is wrong, which retrying may fix."""
    status = answer.status
    if status in NO_ENDPOINT:
        return NotNow(f"the API answered {status} to PUT: check [sync] api_url ({url})")
    if answer.ok:
        return STORED
    if _refused(status) and status != 413:
        return Refused(status, error_message(answer.body, status))
    refusal = _refusal(answer)
    return Refused(413, refusal.message) if isinstance(refusal, TooLarge) else refusal


def messages_answer(
    answer: Answer,
) -> Stored | TraceMissing | KeyRefused | TooLarge | Refused | NotNow:
    """What the answer to a batch of one trace's messages says (the batch as a whole: the
    API answers one status for it)."""
    if answer.ok:
        return STORED
    if answer.status == 404:
        return TraceMissing()
    return _refusal(answer)


def _trace_outcome(status: int, message: str) -> Outcome:
    """One trace's status in a batch answer."""
    if 200 <= status < 300:
        return STORED
    if status in AUTH:
        return KeyRefused(message)
    if _refused(status):
        return Refused(status, message)
    return NotNow(message)


def _refusal(answer: Answer) -> KeyRefused | TooLarge | Refused | NotNow:
    """What a request answered with any status but 2xx means (any status aiohttp lets
    through: 1xx, 3xx, 600 and up are "not now")."""
    status = answer.status
    message = f"HTTP {status}: {error_message(answer.body, status)}"
    if status in AUTH:
        return KeyRefused(f"the API key was refused ({message})")
    if status == 413:
        return TooLarge(message)
    if _refused(status):
        return Refused(status, message)
    return NotNow(message, _hint(answer))


def _refused(status: int) -> bool:
    """A 4xx that is neither "not now" nor a refused key."""
    return 400 <= status < 500 and status not in RETRYABLE | AUTH


def _hint(answer: Answer) -> float | None:
    """The server's "not before", in seconds: the later of Retry-After and the body's
    `error.details.retryAt`, or None when neither is usable."""
    hints = [h for h in (retry_after(answer.retry_after), retry_at(answer.body)) if h is not None]
    return max(hints) if hints else None
