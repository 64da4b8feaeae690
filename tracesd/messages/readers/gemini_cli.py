"""Gemini CLI sessions (`~/.gemini/tmp/<project>/chats/session-*.jsonl`, legacy `.json`).

The Traces CLI 0.6.31 reads no Gemini CLI session (it lists `gemini-cli` among its legacy
agents only), so no CLI upload fixes these ids. The events are those of the last CLI that
read Gemini (0.5.9, `GeminiCliAdapter.parseTraceContent`): per `user` message its text; per
`gemini` message each thought (`<subject>\\n<description>`, at the thought's time), each
tool call and its result (at the call's time), then its text with its model. The keys follow
the 0.6.31 scheme: the message's own id (`user:<id>`, `gemini:<id>`) for every event of the
message, part keys counted per type within it (`text:0`, `thinking:1`, `tool_call:<call id>`,
`tool_result:<call id>`); the message's token counts go on its last event.

A `.jsonl` is an event log: a metadata record, message records, `$set` and `$rewindTo`
records. A message written again (the same id: Gemini adds its tokens, tool results) is read
again: its events keep their orders and keys, a part it did not have takes the next order.
A rewind is not followed (what was read stays read). A legacy `.json` is one document,
re-read whole when it changed.
"""

from __future__ import annotations

from typing import Any

from tracesd.messages.event import Event, Kind, usage
from tracesd.messages.keys import Counter, key
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _lines
from tracesd.models import Trace

#: how many (message, part) orders a reader of a growing session remembers
REMEMBERED = 10_000


class GeminiCliReader:
    def read(self, trace: Trace, position: Position) -> Read:
        path = trace.source_path
        if not path:
            raise Unreadable(f"{trace.id}: no session file")
        if path.endswith(".jsonl"):
            return self._appended(path, position)
        return self._document(path, position)

    def _appended(self, path: str, position: Position) -> Read:
        lines = _lines.appended(path, position)
        state = {} if lines.restarted else position.state
        orders = _Orders(state)
        events: list[Event] = []
        for record in lines.records:
            if record is not None and isinstance(record.get("type"), str) and "id" in record:
                events.extend(_message(record, orders))
        return Read(events, Position(lines.offset, orders.state(), lines.file), more=lines.more)

    def _document(self, path: str, position: Position) -> Read:
        changed = _document.read_if_changed(path, position)
        if changed is None:
            return Read([], position)
        try:
            session = _js.parse_json(changed.data.decode("utf-8", "replace"))
        except ValueError:
            session = None
        messages = session.get("messages") if isinstance(session, dict) else None
        orders = _Orders({})
        events: list[Event] = []
        if isinstance(messages, list) and session.get("sessionId"):
            for message in messages:
                if isinstance(message, dict):
                    events.extend(_message(message, orders))
        return Read(events, changed.position, whole=True)


class _Orders:
    """The order of each (message, part) read so far, and the next one to give."""

    def __init__(self, state: Any) -> None:
        self.next = int(state.get("next", 1))
        self._given: dict[str, int] = dict(state.get("given", {}))
        self._keys = Counter(state.get("keys"))
        self._messages: dict[str, str] = dict(state.get("messages", {}))

    def message_key(self, kind: str, native: str | None) -> str:
        slot = f"{kind}\0{native}"
        found = self._messages.get(slot) if native else None
        if found is None:
            found = self._keys(kind, native)
            if native:
                self._messages[slot] = found
        return found

    def order(self, message_key: str, part_key: str) -> int:
        slot = f"{message_key}\0{part_key}"
        given = self._given.get(slot)
        if given is None:
            given = self._given[slot] = self.next
            self.next += 1
        return given

    def state(self) -> dict[str, Any]:
        return {
            "next": self.next,
            "given": _bounded(self._given),
            "keys": self._keys.state(),
            "messages": _bounded(self._messages),
        }


def _message(m: dict[str, Any], orders: _Orders) -> list[Event]:
    kind = m.get("type")
    if kind not in ("user", "gemini"):
        return []
    native = m["id"] if isinstance(m.get("id"), str) else None
    message_key = orders.message_key(kind, native)
    parts = Counter()
    ts = _time(m.get("timestamp"))
    events: list[Event] = []

    def add(
        kind: Kind, at: int | None, part: str, part_native: str | None = None, **f: Any
    ) -> None:
        part_key = parts(part, part_native) if part_native is None else key(part, part_native)
        order = orders.order(message_key, part_key)
        events.append(
            Event(kind=kind, order=order, timestamp=at, message_key=message_key,
                  part_key=part_key, **f)
        )  # fmt: skip

    if kind == "user":
        add("user_message", ts, "text", content=_text(m.get("content")))
        return events
    for thought in _list(m.get("thoughts")):
        if isinstance(thought, dict):
            content = (
                f"{_js.string(thought.get('subject'))}\n{_js.string(thought.get('description'))}"
            )
            add("agent_thinking", _time(thought.get("timestamp")), "thinking", content=content)
    for call in _list(m.get("toolCalls")):
        if not isinstance(call, dict):
            continue
        call_id = _js.string(call["id"]) if call.get("id") is not None else None
        name = _js.string(call["name"]) if call.get("name") is not None else None
        at = _time(call.get("timestamp"))
        add("tool_call", at, "tool_call", call_id, call_id=call_id, tool_name=name,
            args=call.get("args"))  # fmt: skip
        status = "error" if call.get("status") == "error" else "success"
        add("tool_result", at, "tool_result", call_id, call_id=call_id, tool_name=name,
            output=_result(call), status=status)  # fmt: skip
    text = _text(m.get("content"))
    if _js.trim(text):
        model = m.get("model") if isinstance(m.get("model"), str) else None
        add("agent_text", ts, "text", content=text, model=model)
    tokens = _tokens(m.get("tokens"))
    if events and tokens is not None:
        last = events[-1]
        events[-1] = Event(**{**last.__dict__, "token_usage": tokens})
    return events


def _text(content: Any) -> str:
    """0.5.9's `extractMessageContent`: a string, or the texts of a list, one per line."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(texts)


def _result(call: dict[str, Any]) -> str:
    """0.5.9's `extractToolResult`: the display, else the function response's output."""
    display = call.get("resultDisplay")
    if _js.truthy(display):
        return display if isinstance(display, str) else _js.stringify(display)
    results = _list(call.get("result"))
    first = results[0] if results and isinstance(results[0], dict) else {}
    response = first.get("functionResponse")
    response = response.get("response") if isinstance(response, dict) else None
    output = response.get("output") if isinstance(response, dict) else None
    if _js.truthy(output):
        return output if isinstance(output, str) else _js.stringify(output)
    return "(no output)"


def _tokens(tokens: Any) -> dict[str, Any] | None:
    if not isinstance(tokens, dict):
        return None
    counts = {
        "inputTokenCount": tokens.get("input"),
        "outputTokenCount": tokens.get("output"),
        "cacheReadTokenCount": tokens.get("cached"),
        "reasoningTokenCount": tokens.get("thoughts"),
    }
    return usage({k: int(v) for k, v in counts.items() if _js.is_finite(v) and v >= 0})


def _time(value: Any) -> int | None:
    """`new Date(value).getTime()` (None: NaN)."""
    if _js.is_finite(value):
        return int(value)
    return _js.date_parse(value) if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _bounded(entries: dict[str, Any]) -> dict[str, Any]:
    if len(entries) <= REMEMBERED:
        return entries
    return dict(list(entries.items())[-REMEMBERED:])
