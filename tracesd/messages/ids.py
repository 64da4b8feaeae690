"""The ids of a trace's messages and parts on the Traces API (`idScheme` "v2"), made the way
the real Traces CLI makes them (docs/traces-cli-0.6.31.md, section (f)).

They depend only on the trace's id and on source keys read from the session file, never on
order, time or which program reads it: so the CLI and tracesd, each uploading the same
session, name every message alike, and whichever uploads second adds nothing.

- A source key is `<type>:<native id>`: the agent's own id of the entry (a Claude Code
  line's `uuid`, a tool call's id), or, for an entry without one, `<type>:<n>` where n counts
  the entries of that type so far (from 0) in the trace (messages) or the message (parts).
- The namespace is the trace id itself when it is a UUID (as the npm `uuid` package
  validates one), else the UUIDv5 of it in the URL namespace.
- A message's id is the UUIDv5 of its source key; a part's, of `<message id>:<part key>`.
"""

from __future__ import annotations

import re
import uuid

from tracesd.messages.readers import _js

#: what the CLI takes for a UUID (the npm `uuid` package's `validate`): versions 1-8 of the
#: RFC variant, nil and max, in any case; any other id is hashed into a namespace first
_UUID = re.compile(
    r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)",
    re.IGNORECASE,
)


def source_key(kind: str, native_id: str | None, index: int) -> str:
    """`<kind>:<native id>` (trimmed as JavaScript trims), or `<kind>:<index>` when the entry
    has no id of its own."""
    native = _js.trim(native_id) if native_id is not None else ""
    return f"{kind}:{native or index}"


def namespace(trace_id: str) -> uuid.UUID:
    """The UUIDv5 namespace of a trace's message and part ids."""
    if not _js.trim(trace_id):
        raise ValueError("a trace id is required")
    if _UUID.fullmatch(trace_id):
        return uuid.UUID(trace_id)
    return uuid.uuid5(uuid.NAMESPACE_URL, trace_id)


def message_id(trace_id: str, message_key: str) -> str:
    """The `externalId` of the message with source key `message_key`."""
    return str(uuid.uuid5(namespace(trace_id), _required(message_key, "message")))


def part_id(trace_id: str, message_external_id: str, part_key: str) -> str:
    """The `externalId` of the part with source key `part_key` in that message."""
    name = f"{_required(message_external_id, 'message id')}:{_required(part_key, 'part')}"
    return str(uuid.uuid5(namespace(trace_id), name))


def _required(key: str, what: str) -> str:
    """The key trimmed as JavaScript trims (the CLI's `trim`, not Python's `strip`)."""
    stripped = _js.trim(key)
    if not stripped:
        raise ValueError(f"a {what} source key is required")
    return stripped
