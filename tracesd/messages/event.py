"""One event of a session, as the real Traces CLI models it, and the message it uploads.

The CLI reads a session into events (a user prompt, a piece of assistant text, a thought, a
tool call, a tool result, an error, a system event), each with the source keys its v2 ids
are made from (tracesd.messages.ids). Each event becomes one entry of a message batch with
one part (its function `R2e`, docs/traces-cli-0.6.31.md section (f)); `as_message` is that
mapping, field for field, so tracesd and the CLI upload the same JSON for the same session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote

from tracesd.messages import scrub

Kind = Literal[
    "user_message",
    "agent_text",
    "agent_thinking",
    "tool_call",
    "tool_result",
    "error",
    "system_event",
]

#: the token counts the CLI keeps, in its order; a usage without any of them is no usage
TOKEN_FIELDS = (
    "inputTokenCount",
    "outputTokenCount",
    "cacheReadTokenCount",
    "cacheWriteTokenCount",
    "reasoningTokenCount",
    "totalInputTokenCount",
)

#: the CLI's limit on one event's JSON (its `maxEventBytes`); a bigger one has its content
#: replaced by OVERSIZED before upload
MAX_EVENT_BYTES = 524_288
OVERSIZED = "[Message too Large to Upload]"

_PART_TYPE: dict[str, str] = {
    "user_message": "text",
    "agent_text": "text",
    "agent_thinking": "thinking",
    "tool_call": "tool_call",
    "tool_result": "tool_result",
    "error": "error",
    "system_event": "system_event",
}


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event; the fields a kind does not use stay None (the CLI's `undefined`)."""

    kind: Kind
    order: int
    timestamp: int | float | None
    message_key: str
    part_key: str
    #: user_message, agent_text, agent_thinking
    content: str | None = None
    model: str | None = None
    #: tool_call, tool_result
    call_id: str | None = None
    tool_name: str | None = None
    args: Any = None
    output: str | None = None
    status: str | None = None
    #: error
    message: str | None = None
    #: system_event
    subtype: str | None = None
    data: dict[str, Any] | None = None
    #: timing the CLI copies into a part's content when the agent records it
    started_at: int | float | None = None
    completed_at: int | float | None = None
    duration_ms: int | float | None = None
    token_usage: dict[str, Any] | None = field(default=None)

    def same_as(self, other: Event) -> bool:
        """The CLI's test (`zgt`) for a second event under the same keys that is the same
        event read twice: it collapses into the first instead of becoming `<key>#n`."""
        return self.signature() == other.signature()

    def signature(self) -> str:
        """A digest of what `same_as` compares (kept, small, to compare with later reads)."""
        by_kind: dict[str, tuple[Any, ...]] = {
            "user_message": (self.content,),
            "agent_text": (self.content, self.model),
            "agent_thinking": (self.content, self.duration_ms),
            "tool_call": (self.call_id, self.tool_name, self.args),
            "tool_result": (self.call_id, self.tool_name, self.output, self.status),
            "error": (self.message,),
            "system_event": (self.subtype, self.data),
        }
        compared = json.dumps(
            [self.kind, self.timestamp, *by_kind[self.kind]], sort_keys=True, default=str
        )
        return hashlib.blake2b(
            compared.encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()


def usage(counts: dict[str, Any] | None) -> dict[str, Any] | None:
    """A token usage as the CLI keeps it (`Yt`): None unless one known count is set; counts
    that are None (the CLI's `undefined`) are left out, as JSON.stringify leaves them."""
    if not counts or all(counts.get(name) is None for name in TOKEN_FIELDS):
        return None
    return {name: value for name, value in counts.items() if value is not None}


def as_message(agent_id: str, event: Event, message_id: str, part_id: str) -> dict[str, Any]:
    """The batch entry the CLI uploads for `event` (`R2e`), given the event as `bounded`
    left it: secrets scrubbed from every string, keys the CLI would leave out absent."""
    event = _scrubbed(event)
    tokens = usage(event.token_usage)
    message: dict[str, Any] = {
        "externalId": message_id,
        "sourceKey": event.message_key,
        "role": _role(event.kind),
    }
    if event.kind in ("user_message", "agent_text"):
        message["textContent"] = event.content
    elif event.kind == "error":
        message["textContent"] = event.message or "(no message)"
    if event.kind == "agent_text":
        message["model"] = event.model
    message["order"] = event.order
    message["timestamp"] = event.timestamp
    if tokens is not None and agent_id != "opencode":
        message["tokenUsage"] = tokens
    part: dict[str, Any] = {
        "externalId": part_id,
        "sourceKey": event.part_key,
        "type": _PART_TYPE[event.kind],
        "content": _encode_keys(_content(event)),
    }
    if tokens is not None:
        part["tokenUsage"] = tokens
    message["parts"] = [part]
    defined: dict[str, Any] = _defined(message)
    return defined


def _scrubbed(event: Event) -> Event:
    """The event with secrets scrubbed from every string in it (the CLI's `p1`, applied to
    the event before it becomes an entry; the ids, made before, are UUIDs: nothing to
    scrub), each string once."""
    changed = {
        name: scrub.values(value)
        for name, value in event.__dict__.items()
        if isinstance(value, (str, dict, list))
    }
    return replace(event, **changed)


def bounded(event: Event) -> Event:
    """The event as the CLI stores it: past MAX_EVENT_BYTES its content is replaced."""
    if len(_event_json(event).encode("utf-8", "surrogatepass")) <= MAX_EVENT_BYTES:
        return event
    match event.kind:
        case "user_message" | "agent_text" | "agent_thinking":
            slim = replace(event, content=OVERSIZED)
        case "tool_call":
            slim = replace(event, args={"note": OVERSIZED})
        case "tool_result":
            slim = replace(event, output=OVERSIZED)
        case "error":
            slim = replace(event, message=OVERSIZED)
        case _:
            slim = _fallback(event)
    if len(_event_json(slim).encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
        slim = _fallback(event)
    return slim


def _fallback(event: Event) -> Event:
    return Event(
        kind="error",
        order=event.order,
        timestamp=event.timestamp,
        message_key=event.message_key,
        part_key=event.part_key,
        message=OVERSIZED,
    )


def _event_json(event: Event) -> str:
    return json.dumps(
        {k: v for k, v in event.__dict__.items() if v is not None},
        ensure_ascii=False,
        default=str,
    )


def _role(kind: Kind) -> str:
    if kind == "user_message":
        return "user"
    if kind in ("error", "system_event"):
        return "system"
    return "assistant"


def _content(event: Event) -> dict[str, Any]:
    match event.kind:
        case "user_message" | "agent_text" | "agent_thinking":
            body: dict[str, Any] = {"text": event.content}
        case "tool_call":
            body = {"callId": event.call_id, "toolName": event.tool_name, "args": event.args}
        case "tool_result":
            body = {
                "callId": event.call_id,
                "toolName": event.tool_name,
                "output": event.output,
                "status": event.status,
            }
        case "error":
            body = {"message": event.message or "(no message)"}
        case "system_event":
            return {"subtype": event.subtype, **(event.data or {})}
    for name, value in (
        ("startedAt", event.started_at),
        ("completedAt", event.completed_at),
        ("durationMs", event.duration_ms),
    ):
        if value is not None:
            body[name] = value
    return body


def _encode_keys(value: Any) -> Any:
    """The CLI's `Ew`: object keys that are not printable ASCII are percent-encoded (a key
    that then clashes gets `__1`, `__2`, ...)."""
    if isinstance(value, list):
        return [_encode_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    encoded: dict[str, Any] = {}
    for key, item in value.items():
        name = key if all(32 <= ord(c) <= 126 for c in key) else quote(key, safe="-_.!~*'()")
        unique, n = name, 1
        while unique in encoded:
            unique, n = f"{name}__{n}", n + 1
        encoded[unique] = _encode_keys(item)
    return encoded


def _defined(value: Any) -> Any:
    """Drop None-valued keys the way JSON.stringify drops `undefined` ones (recursively in
    the structure tracesd builds; an agent's own nulls inside args or data stay)."""
    if isinstance(value, dict):
        return {
            k: (_defined(v) if k in ("parts", "content", "tokenUsage") else v)
            for k, v in value.items()
            if v is not None or k not in _OMITTED_WHEN_NONE
        }
    if isinstance(value, list):
        return [_defined(v) for v in value]
    return value


_OMITTED_WHEN_NONE = frozenset(
    {
        "textContent",
        "model",
        "timestamp",
        "tokenUsage",
        "text",
        "callId",
        "toolName",
        "args",
        "output",
        "status",
        "subtype",
        "order",
    }
)
