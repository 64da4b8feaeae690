"""Amp's messages, read as the real Traces CLI 0.6.31 reads them (its `amp` adapter's
`parseTraceContent`, ported).

A thread `T-....json` is one document whose `messages` each become one message (key
`<role>:<messageId, else n>`), skipped when it has no content or is still streaming. A
user message's text blocks become prompts and its `tool_result` blocks tool results (the
tool's name from the earlier call, `(cancelled)` for a cancelled run); a user prompt that
follows another user prompt with no answer between is preceded by a "Request interrupted
by user" error. An assistant message's thinking blocks and tool calls become events in
order, then its text blocks joined into one text, then an error if it was cancelled; its
`usage` goes to the last of these, `turnElapsedMs` gives their timing. An event's time is
its message's `usage.timestamp`, else `meta.sentAt`, else the thread's `created`.

The CLI asks the `amp` command for the thread instead when the file has no messages or is
older than the session it listed (Amp's server copy); tracesd reads the file only.
"""

from __future__ import annotations

import math
from typing import Any

from tracesd.messages.event import Event, usage
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _sequence, _tokens
from tracesd.models import Trace

AGENT_ID = "amp"

_INTERRUPTED = "Request interrupted by user"
_WITH_USAGE = ("agent_text", "agent_thinking", "tool_call", "error")


class _Broken(Exception):
    """Where the CLI's code throws on the document (a property of null, a loop over a
    value that is no list): it uploads nothing for the thread, and neither does tracesd."""


class AmpReader:
    def read(self, trace: Trace, position: Position) -> Read:
        path = trace.source_path
        if not path:
            raise Unreadable(f"amp thread {trace.id} has no source file")
        fingerprint = _document.stamp(path)
        if fingerprint == "-":
            raise Unreadable(f"{path}: cannot be read")
        if _document.unchanged(position, fingerprint):
            return Read([], position)
        thread = _thread(_document.read_json(path))
        if thread is None:
            raise Unreadable(f"{path}: not an Amp thread")
        try:
            events = parse(thread["messages"], thread["created"])
        except _Broken as error:
            raise Unreadable(f"{path}: the Traces CLI cannot read this thread ({error})") from error
        return Read(events, _document.after(fingerprint), whole=True)


def _thread(document: Any) -> dict[str, Any] | None:
    """The CLI's `JPe`: an object with a non-blank string `id` and a `messages` array."""
    if not isinstance(document, dict):
        return None
    ident = document.get("id")
    if (
        not isinstance(ident, str)
        or not _js.trim(ident)
        or not isinstance(document.get("messages"), list)
    ):
        return None
    created = document.get("created")
    finite = (
        isinstance(created, int | float)
        and not isinstance(created, bool)
        and math.isfinite(created)
    )
    return {"messages": document["messages"], "created": created if finite else 0}


def parse(messages: list[Any], created: int | float) -> list[Event]:
    """The events of an Amp thread's messages (the CLI's `parseTraceContent`)."""
    parser = _Parser(created)
    for message in messages:
        if message is None:
            raise _Broken("a message is null")
        parser.message(message)
    return parser.events


class _Parser(_sequence.Sequence):
    def __init__(self, created: int | float) -> None:
        super().__init__()
        self.created = created
        #: call id -> tool name
        self.calls: dict[str, str] = {}
        #: the role of the last message that counted as a turn
        self.last: str | None = None

    def message(self, message: Any) -> None:
        content = _get(message, "content")
        if not content or _get(_get(message, "state"), "type") == "streaming":
            return
        at = _time(message, self.created)
        role = _get(message, "role")
        kind = _js.string(role) if _has(message, "role") else "undefined"
        ident = _js.string(message["messageId"]) if _has(message, "messageId") else None
        self.begin(kind, ident, at)
        if role == "user":
            self.user(_blocks(content, iterate_text=False))
        elif role == "assistant":
            self.assistant(message, _blocks(content, iterate_text=True))

    def user(self, blocks: list[Any]) -> None:
        prompted = any(_get(b, "type") == "text" and _get(b, "text") for b in blocks)
        if prompted and self.last == "user":
            self.add("error", "error", message=_INTERRUPTED)
        for block in blocks:
            kind = _get(block, "type")
            if kind == "text" and _get(block, "text"):
                self.add("user_message", "text", content=_text(_get(block, "text")))
            elif kind == "tool_result" and (call_id := _get(block, "toolUseID")):
                run = _get(block, "run")
                cancelled = _get(run, "status") == "cancelled"
                failed = cancelled or _get(run, "status") == "error"
                self.add_result(
                    _native(call_id),
                    self.calls.get(call_id, ""),
                    "(cancelled)" if cancelled else _output(block),
                    failed=failed,
                )
        if prompted:
            self.last = "user"

    def assistant(self, message: dict[str, Any], blocks: list[Any]) -> None:
        first = len(self.events)
        timing = _timing(self.at, _get(message, "turnElapsedMs"))
        said = ""
        for block in blocks:
            kind = _get(block, "type")
            if kind == "thinking" and (thought := _get(block, "thinking")):
                self.add("agent_thinking", "thinking", content=_text(thought), **timing)
            if kind == "text" and (text := _get(block, "text")):
                said += f"{_js.string(text)}\n"
            if kind == "tool_use" and (name := _get(block, "name")):
                native = _get(block, "id")
                call_id = _native(native) if native else f"call-{self.order}"
                self.calls[call_id] = _js.string(name)
                self.add(
                    "tool_call",
                    "tool_call",
                    call_id if native else None,
                    call_id=call_id,
                    tool_name=_js.string(name),
                    args=_get(block, "input") or {},
                    **timing,
                )
        said = _js.trim(said)
        if said:
            model = _get(_get(message, "usage"), "model")
            model = model if isinstance(model, str) else None
            self.add("agent_text", "text", content=said, model=model, **timing)
        if _get(_get(message, "state"), "type") == "cancelled":
            self.add("error", "error", message=_INTERRUPTED, **timing)
        tokens = _usage(_get(message, "usage"))
        if tokens is not None:
            _tokens.attach(self.events, first, tokens, _WITH_USAGE)
        self.last = "assistant"


def _has(value: Any, name: str) -> bool:
    return isinstance(value, dict) and name in value


def _get(value: Any, name: str) -> Any:
    """`value?.name`: None for a member that is not there (where the CLI reads a member
    of null without `?.`, the caller checks first and raises _Broken)."""
    if isinstance(value, dict):
        return value.get(name)
    return None


def _blocks(content: Any, *, iterate_text: bool) -> list[Any]:
    """What `content.some(...)` (user) or `for (b of content)` (assistant) goes over."""
    if isinstance(content, list):
        if any(b is None for b in content):
            raise _Broken("a content block is null")
        return content
    if iterate_text and isinstance(content, str):
        return list(content)  # characters: no block type, no event
    raise _Broken("content is not a list")


def _native(value: Any) -> str:
    if not isinstance(value, str):
        raise _Broken("an id is not a string")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Broken("a text is not a string")
    return value


def _time(message: Any, created: int | float) -> int | float:
    """`extractMessageTimestamp`: `usage.timestamp`, else a numeric `meta.sentAt`."""
    stamp = _get(_get(message, "usage"), "timestamp")
    if stamp:
        parsed = _js.date_parse(_js.string(stamp))
        if parsed is not None:
            return parsed
    sent = _get(_get(message, "meta"), "sentAt")
    if sent and isinstance(sent, int | float) and not isinstance(sent, bool):
        return sent
    return created


def _timing(at: int | float, elapsed: Any) -> dict[str, Any]:
    """`uc`: a turn's start, end and duration from its elapsed milliseconds."""
    if isinstance(elapsed, bool) or not isinstance(elapsed, int | float):
        return {}
    if not math.isfinite(elapsed) or elapsed < 0:
        return {}
    return {"started_at": max(0, at - elapsed), "completed_at": at, "duration_ms": elapsed}


def _output(block: Any) -> str:
    """`extractToolResultOutput`."""
    run = _get(block, "run")
    result = _get(run, "result")
    if not result:
        if _get(run, "status") == "error":
            message = _get(_get(run, "error"), "message")
            return message if isinstance(message, str) and _js.trim(message) else "(error)"
        return "(no output)"
    if isinstance(result, list):
        return "\n".join(_output_item(item) for item in result)
    if isinstance(_get(result, "content"), str):
        return str(result["content"])
    if isinstance(_get(result, "output"), str):
        return str(result["output"])
    return _js.stringify(result, 2)


def _output_item(item: Any) -> str:
    if not isinstance(item, dict):
        return _js.string(item)
    if isinstance(item.get("text"), str):
        return str(item["text"])
    data = item.get("data")
    if isinstance(data, str):
        kind = item["type"] if isinstance(item.get("type"), str) else "binary"
        return f"[{kind} data, {_js.to_fixed(_js.utf16_length(data) / 1024, 1)} KB]"
    return _js.stringify(item)


def _usage(counts: Any) -> dict[str, Any] | None:
    """`mapAmpTokenUsage`."""
    if not counts:
        return None
    return usage(
        {
            "inputTokenCount": _tokens.count(_get(counts, "inputTokens")),
            "outputTokenCount": _tokens.count(_get(counts, "outputTokens")),
            "cacheReadTokenCount": _tokens.count(_get(counts, "cacheReadInputTokens")),
            "cacheWriteTokenCount": _tokens.count(_get(counts, "cacheCreationInputTokens")),
            "totalInputTokenCount": _tokens.count(_get(counts, "totalInputTokens")),
        }
    )
