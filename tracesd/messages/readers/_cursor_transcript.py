"""Cursor's agent transcripts (`~/.cursor/projects/<slug>/agent-transcripts/<id>.jsonl`) read
into events as the CLI does (its cursor adapter's `parseTranscriptRecordsToEvents` and
`appendTranscriptMessageEvents`), record by record so that a growing file is read once.

Each JSON-object line is a record; its index among the records (lines that are not JSON
objects do not count) is its message key's index: `<role or type>:<record id or index>`.
Parts are keyed per record by a fresh counter (`text:0`, `tool_use:<call id>`, ...). Records
without a `timestamp` (Cursor writes none) take the file's modification time, as the CLI does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracesd.messages import keys
from tracesd.messages.event import Event, Kind
from tracesd.messages.readers import _js, _parts

_CALLS = frozenset({"tool_call", "tool_use", "function_call"})
_RESULTS = frozenset({"tool_result", "tool_output", "function_call_output"})
_SKIPPED = frozenset({"session", "model_change", "session.model_change", "turn_ended"})
_SAID = frozenset({"user_message", "assistant_message", "agent_message"})
_USER_QUERY = re.compile(r"<user_query>\n?([\s\S]*?)\n?</user_query>")
#: call id -> tool name, the most kept between reads
MAX_CALLS = 10_000


@dataclass
class Transcript:
    """What reading the records so far left for the next ones."""

    #: the file's modification time (ms, as JavaScript's `mtimeMs`): records without a time
    fallback_ms: float
    records: int = 0
    order: int = 1
    calls: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def resume(cls, state: Mapping[str, Any], fallback_ms: float) -> Transcript:
        calls = state.get("calls")
        return cls(
            fallback_ms,
            int(state.get("records", 0)),
            int(state.get("order", 1)),
            dict(calls) if isinstance(calls, dict) else {},
        )

    def state(self) -> dict[str, Any]:
        calls = list(self.calls.items())[-MAX_CALLS:]
        return {"records": self.records, "order": self.order, "calls": dict(calls)}

    def read(self, record: dict[str, Any]) -> None:
        index = self.records
        self.records += 1
        _Record(self, record, index).read()

    def call(self, call_id: str, *sources: dict[str, Any]) -> dict[str, Any]:
        """A tool call's fields from its sources (each one's `toolName`, `name`; `args`,
        `input`, `arguments`, in turn); its tool is kept for its result."""
        name = _tool_name(*sources)
        self.calls[call_id] = name
        given = (s.get(k) for s in sources for k in ("args", "input", "arguments"))
        return {"call_id": call_id, "tool_name": name, "args": _parts.args(_js.first(*given))}

    def result(
        self, call_id: str, body: Any, status: str, *sources: dict[str, Any]
    ) -> dict[str, Any]:
        """A tool result's fields: the tool its call named, else its sources' tool."""
        return {
            "call_id": call_id,
            "tool_name": self.calls.get(call_id) or _tool_name(*sources),
            "output": _parts.output(body) or "(empty result)",
            "status": status,
        }


def _role(value: Any) -> str | None:
    picked = _js.pick_string(value)
    role = picked.lower() if picked else None
    return role if role in ("user", "assistant", "tool") else None


def _tool_name(*sources: dict[str, Any]) -> str:
    """`pickTranscriptString([s.toolName, s.name, ...]) ?? "unknown"` over the sources."""
    return _js.pick_string(*(s.get(k) for s in sources for k in ("toolName", "name"))) or "unknown"


def strip_user_query(text: str) -> str:
    """The CLI's `stripUserQueryTags`."""
    found = _USER_QUERY.search(text)
    return _js.trim(found.group(1)) if found else _js.trim(text)


class _Record:
    """One record, and what every event it makes shares: its id, time and model."""

    def __init__(self, reading: Transcript, record: dict[str, Any], index: int) -> None:
        self.t, self.rec, self.index = reading, record, index
        self.native = _js.pick_string(record.get("id"))
        self.base = self.native or f"entry-{index + 1}"
        self.at = _js.timestamp(record.get("timestamp"), reading.fallback_ms)
        self.data = _js.record(record.get("data")) or {}
        self.model = _js.pick_string(
            record.get("modelId"),
            record.get("model"),
            record.get("newModel"),
            self.data.get("model"),
            self.data.get("modelId"),
            self.data.get("newModel"),
        )

    def read(self) -> None:
        t, l = self.t, self.rec  # noqa: E741 -- the CLI's names, to compare
        kind = _js.pick_string(l.get("type"))
        kind = kind.lower() if kind else None
        role = _role(l.get("role"))
        message = l.get("message")
        if kind is None and isinstance(message, dict):
            blocks = _parts.blocks(message.get("content"))
            text = _js.pick_string(
                message.get("text"), _str(message.get("content")), _str(message.get("message"))
            )
            if blocks or text:
                merged = {
                    **message,
                    "role": _role(message.get("role")) or role,
                    "model": _js.pick_string(message.get("model"), self.model),
                    "modelId": _js.pick_string(message.get("modelId"), self.model),
                }
                self.message(merged, role)
                return
        if kind in _SKIPPED:
            return
        if kind == "message":
            if isinstance(message, dict):
                self.message(message, None)  # the CLI gives this one no fallback role
            else:
                self.message(self.loose(role), role)
            return
        if kind in _CALLS:
            call = _js.record(l.get("toolCall")) or _js.record(l.get("functionCall")) or {}
            own = _js.pick_string(
                l.get("callId"), l.get("toolCallId"), call.get("callId"), call.get("id")
            )
            call_id = own or self.native or f"{self.base}:call"
            self.loose_event(kind, "tool_use", own, "tool_call", **t.call(call_id, l, call))
            return
        if kind in _RESULTS:
            out = _js.record(l.get("toolResult")) or _js.record(l.get("functionCallOutput")) or {}
            own = _js.pick_string(
                l.get("callId"),
                l.get("toolCallId"),
                out.get("toolCallId"),
                out.get("callId"),
                out.get("id"),
            )
            call_id = own or self.native or f"{self.base}:call"
            body = _js.first(
                l.get("output"),
                l.get("result"),
                l.get("content"),
                out.get("output"),
                out.get("result"),
                out.get("response"),
            )
            status = _parts.status(
                _js.first(l.get("status"), out.get("status")),
                _js.first(l.get("is_error"), out.get("is_error")),
            )
            fields = t.result(call_id, body, status, l, out)
            self.loose_event(kind, "tool_result", own, "tool_result", **fields)
            return
        if kind == "error":
            text = _js.pick_string(l.get("message"), self.data.get("message")) or "Unknown error"
            self.loose_event(kind, "error", None, "error", message=text)
            return
        if kind in _SAID:
            said = "user" if kind == "user_message" else "assistant"
            self.message(message if isinstance(message, dict) else self.loose(said), said)
            return
        payload = _js.record(l.get("payload"))
        said_kind = _js.pick_string(payload.get("type")) if payload else None
        if payload is not None and said_kind and said_kind.lower() in _SAID:
            said = "user" if said_kind.lower() == "user_message" else "assistant"
            loose = {
                "role": said,
                "text": _js.pick_string(
                    payload.get("message"), payload.get("text"), payload.get("content")
                ),
                "model": payload.get("model"),
                "modelId": payload.get("modelId"),
            }
            self.message(loose, said)
            return
        if role:
            self.message(l, role)

    def loose(self, role: str | None) -> dict[str, Any]:
        l = self.rec  # noqa: E741
        message = l.get("message")
        return {
            "role": role,
            "text": _js.pick_string(l.get("text"), _str(message)),
            "content": l.get("content"),
            "thinking": l.get("thinking"),
            "model": l.get("model"),
            "modelId": l.get("modelId"),
        }

    def loose_event(
        self,
        kind: str,
        part_type: str,
        part_native: str | None,
        event: Kind,
        **fields: Any,
    ) -> None:
        """An event of a record that is one tool call, tool result or error itself."""
        t = self.t
        t.events.append(
            Event(
                kind=event,
                order=t.order,
                timestamp=_js.plain(self.at),
                message_key=keys.key(kind, self.native, self.index),
                part_key=keys.key(part_type, part_native),
                **fields,
            )
        )
        t.order += 1

    def message(self, message: dict[str, Any], fallback_role: str | None) -> None:
        """`appendTranscriptMessageEvents`: the events of a message in this record."""
        t, base = self.t, self.base
        role = _role(message.get("role")) or fallback_role
        when = _js.plain(_js.timestamp(message.get("timestamp"), self.at))
        used = _js.pick_string(message.get("modelId"), message.get("model")) or self.model
        message_key = keys.key(role or "message", self.native, self.index)
        part = keys.Counter()

        def add(kind: Kind, part_type: str, part_native: str | None = None, **fields: Any) -> None:
            t.events.append(
                Event(
                    kind=kind,
                    order=t.order,
                    timestamp=when,
                    message_key=message_key,
                    part_key=part(part_type, part_native),
                    **fields,
                )
            )
            t.order += 1

        said = thought = called = answered = False
        for n, block in enumerate(_parts.blocks(message.get("content"))):
            block_type = _js.pick_string(block.get("type"))
            block_type = block_type.lower() if block_type else "text"
            block_id = _js.pick_string(block.get("id"))
            if block_type == "thinking":
                text = _js.pick_string(
                    block.get("thinking"), block.get("text"), _str(block.get("content"))
                )
                if role == "assistant" and text:
                    add("agent_thinking", "thinking", block_id, content=text)
                    thought = True
                continue
            if block_type in _CALLS:
                own = _js.pick_string(block.get("callId"), block.get("toolCallId"), block.get("id"))
                add("tool_call", "tool_use", own, **t.call(own or f"{base}:call-{n + 1}", block))
                called = True
                continue
            if block_type in _RESULTS:
                own = _js.pick_string(block.get("callId"), block.get("toolCallId"), block.get("id"))
                body = _js.first(block.get("output"), block.get("result"), block.get("content"))
                status = _parts.status(block.get("status"), block.get("is_error"))
                fields = t.result(own or f"{base}:call-{n + 1}", body, status, block)
                add("tool_result", "tool_result", own, **fields)
                answered = True
                continue
            text = _js.pick_string(block.get("text"), _str(block.get("content")))
            if not text:
                continue
            if role == "user":
                add("user_message", "text", block_id, content=strip_user_query(text))
                said = True
            elif role == "assistant":
                add("agent_text", "text", block_id, content=text, model=used)
                said = True
        if role == "assistant" and not thought:
            text = _js.pick_string(message.get("thinking"))
            if text:
                add("agent_thinking", "thinking", content=text)
        calls = message.get("toolCalls")
        if not called and isinstance(calls, list):
            for n, item in enumerate(calls):
                call = _js.record(item)
                if call is None:
                    continue
                own = _js.pick_string(call.get("callId"), call.get("id"))
                call_id = own or f"{base}:tool-call-{n + 1}"
                add("tool_call", "tool_use", own, **t.call(call_id, call))
        result = _js.record(message.get("toolResult"))
        if role == "tool" and not answered and result is not None:
            own = _js.pick_string(result.get("toolCallId"), result.get("callId"), result.get("id"))
            body = _js.first(result.get("result"), result.get("output"), result.get("response"))
            status = _parts.status(result.get("status"))
            fields = t.result(own or f"{base}:tool-result", body, status, result)
            add("tool_result", "tool_result", own, **fields)
        if not said:
            text = _js.pick_string(
                message.get("text"), _str(message.get("content")), _str(message.get("message"))
            )
            if text and role == "user":
                add("user_message", "text", content=strip_user_query(text))
            elif text and role == "assistant":
                add("agent_text", "text", content=text, model=used)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
