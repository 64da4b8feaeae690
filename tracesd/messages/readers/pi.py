"""Pi: a session file read into the CLI's events (its `hc` adapter's `parseRawContent`).

The CLI reads a Pi session whole each time. Events get the order they are made in; a
message key counts per message type (`user:0`, `assistant:1`, `tool_call:<call id>`, ...)
and a key made twice gets `#1`, `#2`; a part key is `<part type>:<native id or 0>`. An
assistant message's usage goes on its last text, thought, tool call or error. A Pi skill
load (`custom` `context:skill_loaded`) takes back the `read` of its SKILL.md made just
before it (those events are removed) and becomes a skill call and result.

Because a later entry can remove events already made, this reader re-reads the file whole
(`Read.whole`) when it changed (size or mtime), as the CLI does, instead of following the
appended lines; Pi sessions are short next to Claude Code's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from tracesd.messages import keys
from tracesd.messages.event import Event, Kind, usage
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _parts
from tracesd.models import Trace

_CALLS = frozenset({"tool_call", "tool_use", "function_call", "toolcall"})
_RESULTS = frozenset({"tool_result", "tool_output", "function_call_output", "toolresult"})
_CARRIERS = frozenset({"agent_text", "agent_thinking", "tool_call", "error"})


class PiReader:
    def read(self, trace: Trace, position: Position) -> Read:
        if not trace.source_path:
            raise Unreadable(f"{trace.id}: no session file")
        changed = _document.read_if_changed(trace.source_path, position)
        if changed is None:
            return Read([], position)
        events = _Parse(trace.timestamp).run(_entries(changed.data.decode("utf-8", "replace")))
        return Read(events, changed.position, whole=True)


def _entries(text: str) -> list[Any]:
    """`parseJsonEntries`: one JSON value per non-blank line (a line that is not JSON is
    passed over)."""
    out: list[Any] = []
    for line in text.split("\n"):
        line = _js.trim(line)
        if not line:
            continue
        try:
            out.append(_js.parse_json(line))
        except ValueError:
            continue
    return out


def _time(value: Any) -> float | int | None:
    """`parseTimestamp`: epoch seconds or ms (as a number or numeric string), or ISO."""
    if _js.is_finite(value):
        given: float | int = value
        return given * 1000 if given < 1_000_000_000_000 else given
    if isinstance(value, str):
        n = _js.to_number(value)
        if not math.isfinite(n):
            return _js.date_parse(value)
        whole = _js.plain(n)
        return whole * 1000 if whole < 1_000_000_000_000 else whole
    return None


class _Parse:
    def __init__(self, fallback_time: int | None) -> None:
        self.fallback = fallback_time
        self.events: list[Event] = []
        self.message_keys = keys.Counter()
        self.made: dict[str, int] = {}
        self.order = 1
        self.calls: dict[str, str] = {}
        #: skill loads waiting for the result of their SKILL.md read: call id -> load
        self.skills: dict[str, dict[str, Any]] = {}

    def push(
        self,
        kind: Kind,
        time: Any,
        message_of: tuple[str, str | None],
        part_of: tuple[str, str | None],
        **fields: Any,
    ) -> None:
        """Append an event with the keys the CLI's Pi assigner gives it (message type and
        native id; part type and native id)."""
        key = self.message_keys(*message_of)
        n = self.made.get(key, 0)
        self.made[key] = n + 1
        self.events.append(
            Event(
                kind=kind,
                order=self.order,
                timestamp=time,
                message_key=key if n == 0 else f"{key}#{n}",
                part_key=keys.key(part_of[0], part_of[1]),
                **fields,
            )
        )
        self.order += 1

    def skill(self, load: dict[str, Any], output: str, status: str = "success") -> None:
        call, time = load["callId"], load["timestamp"]
        args = {"name": load["name"], **({"path": load["path"]} if load["path"] else {})}
        args["sourceFormat"] = "pi-skill-loaded"
        self.push(
            "tool_call",
            time,
            ("skill_loaded", call),
            ("tool_call", call),
            call_id=call,
            tool_name="skill",
            args=args,
        )
        self.push(
            "tool_result",
            time,
            ("skill_loaded", call),
            ("tool_result", call),
            call_id=call,
            tool_name="skill",
            output=output,
            status=status,
        )

    def run(self, entries: list[Any]) -> list[Event]:
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            kind = _js.pick_string(entry.get("type"))
            if kind is None:
                continue
            self.entry(index, entry, kind.lower())
        return self.events

    def entry(self, index: int, v: dict[str, Any], kind: str) -> None:
        native = _js.pick_string(v.get("id")) or f"line-{index + 1}"
        stamp = _time(v.get("timestamp"))
        time = stamp if stamp is not None else self.fallback
        if kind in ("model_change", "session", "thinking_level_change"):
            return
        if kind == "message":
            message = _js.record(v.get("message"))
            if message is not None:
                self.message(message, v, native, stamp, time)
            return
        if kind in _CALLS:
            self.call(v, native, time)
            return
        if kind in _RESULTS:
            self.result(v, native, time)
            return
        if kind == "error":
            error = _js.record(v.get("error"))
            text = _js.pick_string(v.get("message"), _js.get(error, "message")) or "Unknown error"
            self.push("error", time, ("error", None), ("error", None), message=text)
        if kind == "compaction":
            data: dict[str, Any] = {}
            summary = _js.pick_string(v.get("summary"))
            if summary:
                data["summary"] = summary
            if _js.is_number(v.get("tokensBefore")):
                data["tokensBefore"] = v["tokensBefore"]
            kept = _js.pick_string(v.get("firstKeptEntryId"))
            if kept:
                data["retainedFromId"] = kept
            self.push(
                "system_event",
                time,
                ("system_event", None),
                ("system_event", None),
                subtype="compaction",
                data=data,
            )
            return
        if kind == "custom" and _js.pick_string(v.get("customType")) == "context:skill_loaded":
            self.skill_loaded(v, native, time)

    def message(
        self, y: dict[str, Any], v: dict[str, Any], native: str, stamp: Any, fallback: Any
    ) -> None:
        role = (_js.pick_string(y.get("role")) or "").lower() or None
        own = _time(y.get("timestamp"))
        time = own if own is not None else fallback
        timing: dict[str, Any] = {}
        if role == "assistant" and own is not None:
            timing = {"started_at": own}
            if stamp is not None and stamp >= own:
                timing = {"started_at": own, "completed_at": stamp, "duration_ms": stamp - own}
        model = _js.pick_string(y.get("model"), y.get("modelId"))
        if role in ("toolresult", "tool_result", "tool"):
            self.tool_message(y, v, native, time)
            return
        if role == "bashexecution":
            command = _js.pick_string(y.get("command")) or ""
            if command:
                output = _text(y.get("output")) or "(no output)"
                code = y.get("exitCode") if _js.is_number(y.get("exitCode")) else None
                failed = y.get("cancelled") is True or (code or 0) != 0
                call = f"{native}:bash"
                self.push(
                    "tool_call",
                    time,
                    ("bash_execution", native),
                    ("tool_call", None),
                    call_id=call,
                    tool_name="bash",
                    args={"command": command},
                )
                self.push(
                    "tool_result",
                    time,
                    ("bash_execution_output", native),
                    ("tool_result", None),
                    call_id=call,
                    tool_name="bash",
                    output=output,
                    status="error" if failed else "success",
                )
            return
        start = len(self.events)
        for n, block in enumerate(_parts.blocks(y.get("content"))):
            self.block(n, block, role, native, time, timing, model)
        if role == "assistant":
            counts = _usage(_js.record(y.get("usage")))
            if counts is not None:
                for i in range(len(self.events) - 1, start - 1, -1):
                    if self.events[i].kind in _CARRIERS:
                        self.events[i] = replace(self.events[i], token_usage=counts)
                        break

    def block(
        self,
        n: int,
        b: dict[str, Any],
        role: str | None,
        native: str,
        time: Any,
        timing: dict[str, Any],
        model: str | None,
    ) -> None:
        kind = (_js.pick_string(b.get("type")) or "text").lower()
        if kind == "thinking":
            content = b.get("content")
            text = _js.pick_string(
                b.get("thinking"), b.get("text"), content if isinstance(content, str) else None
            )
            if role == "assistant" and text:
                self.push(
                    "agent_thinking",
                    time,
                    ("thinking", None),
                    ("thinking", None),
                    content=text,
                    **timing,
                )
            return
        if kind in _CALLS:
            self.call(b, native, time, index=n, timing=timing)
            return
        if kind in _RESULTS:
            self.result(b, native, time, index=n, timing=timing)
            return
        content = b.get("content")
        text = _js.pick_string(b.get("text"), content if isinstance(content, str) else None)
        if not text:
            return
        if role == "user":
            self.push("user_message", time, ("user", None), ("text", None), content=text)
        elif role == "assistant":
            self.push(
                "agent_text",
                time,
                ("assistant", None),
                ("text", None),
                content=text,
                model=model,
                **timing,
            )

    def call(
        self,
        v: dict[str, Any],
        native: str,
        time: Any,
        index: int | None = None,
        timing: dict[str, Any] | None = None,
    ) -> None:
        """A tool call entry, or block (`index`) of a message."""
        inner = _js.record(v.get("toolCall")) or _js.record(v.get("functionCall"))
        call = _js.pick_string(
            v.get("callId"),
            v.get("toolCallId"),
            _js.get(inner, "callId"),
            _js.get(inner, "id"),
            v.get("id"),
        )
        call = call or _call_id(native, index)
        name = _js.pick_string(
            v.get("name"), v.get("toolName"), _js.get(inner, "name"), _js.get(inner, "toolName")
        )
        name = name or "unknown"
        args = _parts.args(
            _js.first(
                v.get("args"),
                v.get("input"),
                v.get("arguments"),
                _js.get(inner, "args"),
                _js.get(inner, "input"),
                _js.get(inner, "arguments"),
            )
        )
        self.calls[call] = name
        self.push(
            "tool_call",
            time,
            ("tool_call", call),
            ("tool_call", call),
            call_id=call,
            tool_name=name,
            args=args,
            **(timing or {}),
        )

    def result(
        self,
        v: dict[str, Any],
        native: str,
        time: Any,
        index: int | None = None,
        timing: dict[str, Any] | None = None,
    ) -> None:
        """A tool result entry, or block (`index`) of a message (alike in shape to `call`
        only: the CLI reads other fields for each)."""
        inner = _js.record(v.get("toolResult")) or _js.record(v.get("functionCallOutput"))
        call = _js.pick_string(
            v.get("callId"),
            v.get("toolCallId"),
            _js.get(inner, "toolCallId"),
            _js.get(inner, "callId"),
            _js.get(inner, "id"),
            v.get("id"),
        )
        call = call or _call_id(native, index)
        name = _js.pick_string(
            v.get("name"), v.get("toolName"), _js.get(inner, "name"), _js.get(inner, "toolName")
        )
        body = _js.first(
            v.get("output"),
            v.get("result"),
            v.get("content"),
            _js.get(inner, "output"),
            _js.get(inner, "result"),
            _js.get(inner, "response"),
        )
        status = _parts.status(
            _js.first(v.get("status"), _js.get(inner, "status")),
            _js.first(v.get("is_error"), _js.get(inner, "is_error")),
        )
        self.answer(call, name, body, status, time, timing, skill=index is None)

    def tool_message(self, y: dict[str, Any], v: dict[str, Any], native: str, time: Any) -> None:
        """A message with a tool result role (its fields and their order are its own)."""
        inner = _js.record(y.get("result")) or _js.record(y.get("toolResult"))
        call = _js.pick_string(
            y.get("callId"),
            y.get("toolCallId"),
            _js.get(inner, "toolCallId"),
            _js.get(inner, "callId"),
            y.get("id"),
            v.get("id"),
        )
        name = _js.pick_string(y.get("toolName"), y.get("name"), _js.get(inner, "name"))
        body = _js.first(
            y.get("output"),
            y.get("result"),
            y.get("content"),
            _js.get(inner, "output"),
            _js.get(inner, "response"),
        )
        status = _parts.status(
            _js.first(y.get("status"), _js.get(inner, "status")),
            _js.first(y.get("is_error"), y.get("isError"), _js.get(inner, "is_error")),
        )
        self.answer(call or _call_id(native, None), name, body, status, time, None, skill=True)

    def answer(
        self,
        call: str,
        name: str | None,
        body: Any,
        status: str,
        time: Any,
        timing: dict[str, Any] | None,
        skill: bool,
    ) -> None:
        """A tool result's event; with `skill`, the result a skill load waits for becomes
        the skill's (its SKILL.md read taken back)."""
        output = _text(body) or "(empty result)"
        if skill and call in self.skills:
            load = self.skills.pop(call)
            self.calls.pop(call, None)
            self._remove_call(call)
            self.skill(load, output, status)
            return
        self.push(
            "tool_result",
            time,
            ("tool_result", call),
            ("tool_result", call),
            call_id=call,
            tool_name=self.calls.get(call) or name or "unknown",
            output=output,
            status=status,
            **(timing or {}),
        )

    def skill_loaded(self, v: dict[str, Any], native: str, time: Any) -> None:
        data = _js.record(v.get("data"))
        name = _js.pick_string(_js.get(data, "name"))
        if not name:
            return
        path = _js.pick_string(_js.get(data, "path"))
        read = self._take_skill_read(path) if path else None
        call = _js.pick_string(v.get("id")) or f"{native}:skill"
        if path and read is not None and "output" not in read and read.get("callId"):
            self.skills[read["callId"]] = {
                "name": name,
                "path": path,
                "callId": call,
                "timestamp": time,
            }
            return
        fallback = f"Loaded skill: {name}\n{path}" if path else f"Loaded skill: {name}"
        output = read["output"] if read is not None and "output" in read else fallback
        self.skill({"name": name, "path": path or "", "callId": call, "timestamp": time}, output)

    def _take_skill_read(self, path: str) -> dict[str, Any] | None:
        """`takePrecedingSkillMdRead`: the `read` of `path` since the last prompt, removed
        with its result."""
        for i in range(len(self.events) - 1, -1, -1):
            event = self.events[i]
            if event.kind == "user_message":
                break
            if event.kind != "tool_call":
                continue
            tool = (event.tool_name or "").lower()
            if not (tool == "read" or tool.endswith(".read")):
                continue
            read_path = _js.get(event.args, "path")
            if not isinstance(read_path, str) or read_path != path:
                continue
            for j in range(i + 1, len(self.events)):
                later = self.events[j]
                if later.kind == "tool_result" and later.call_id == event.call_id:
                    del self.events[j]
                    del self.events[i]
                    self.calls.pop(event.call_id or "", None)
                    return {"callId": event.call_id, "output": later.output}
            return {"callId": event.call_id}
        return None

    def _remove_call(self, call: str) -> None:
        for i in range(len(self.events) - 1, -1, -1):
            event = self.events[i]
            if event.kind == "user_message":
                return
            if event.kind == "tool_call" and event.call_id == call:
                del self.events[i]
                return


def _call_id(native: str, index: int | None) -> str:
    """The call id of a tool entry (or block `index`) that names none."""
    return f"{native}:call" if index is None else f"{native}:call-{index}"


def _text(value: Any) -> str:
    """`extractTextContent`."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return _parts.output(value)
    parts: list[str] = []
    for item in value:
        if isinstance(item, str):
            if _js.trim(item):
                parts.append(_js.trim(item))
            continue
        if isinstance(item, dict):
            text = _js.pick_string(item.get("text"), item.get("output"), item.get("content"))
            if text:
                parts.append(text)
    return "\n".join(parts)


def _usage(counts: dict[str, Any] | None) -> dict[str, Any] | None:
    if counts is None:
        return None
    mapped: dict[str, Any] = {}
    for ours, theirs in (
        ("inputTokenCount", "input"),
        ("outputTokenCount", "output"),
        ("cacheReadTokenCount", "cacheRead"),
        ("cacheWriteTokenCount", "cacheWrite"),
        ("reasoningTokenCount", "reasoning"),
    ):
        value: Any = counts.get(theirs)
        if _js.is_number(value) and 0 <= value < float("inf"):
            mapped[ours] = int(value // 1)
    return usage(mapped)
