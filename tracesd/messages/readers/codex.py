"""Codex rollouts (`sessions/YYYY/MM/DD/rollout-*.jsonl`) read as the CLI reads them.

A port of the CLI's codex adapter `parseJsonlTrace` with `createCodexIdentityAssigner`:
every event's message key comes from one counter by message type (`user:0`, `assistant:0`,
`function_call:<call id>`, ...), its part key is `<part type>:<native id or 0>`; `order`
counts from 1. The environment-context envelope is a user message like any other. Codex
writes most texts twice (an `event_msg` and a `response_item`): the CLI keeps the first and
drops the other when it comes within one order and 15 s of it. A `token_count` puts the
turn's last usage on the latest assistant event since the turn began, which may be one an
earlier read returned: that event is returned again (same order, same keys).

Differs from the CLI: a `custom_tool_call` named `exec` (Codex's code mode) is one tool call
here; the CLI parses its JavaScript with tree-sitter into one call per `tools.x(...)` in it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from typing import Any, TypeVar

from tracesd.messages.event import Event, Kind, usage
from tracesd.messages.keys import Counter, key
from tracesd.messages.readers import Position, Read, Unreadable, _js, _lines, _tokens
from tracesd.messages.readers import _codex_output as out
from tracesd.models import Trace

#: how many call ids, edits and texts seen a reader remembers from earlier reads
REMEMBERED = 10_000
#: the CLI's window for a text written twice: within one order and this many ms
_TWICE_MS = 15_000
_QUOTA_STEPS = (75, 90, 100)
_V = TypeVar("_V")
_TOKEN_TARGETS = ("agent_text", "agent_thinking", "tool_call", "error")


class CodexReader:
    def read(self, trace: Trace, position: Position) -> Read:
        if not trace.source_path:
            raise Unreadable(f"{trace.id}: no rollout file")
        lines = _lines.appended(trace.source_path, position)
        state = {} if lines.restarted else dict(position.state)
        session = _Session(state, trace.timestamp)
        for record in lines.records:
            session.line(record)
        return Read(
            session.events,
            Position(lines.offset, session.state(), lines.file),
            more=lines.more,
        )


class _Session:
    """What `parseJsonlTrace` keeps while it walks the lines, carried between reads."""

    def __init__(self, state: dict[str, Any], fallback_ts: int | None) -> None:
        self.events: list[Event] = []
        self._fallback_ts = fallback_ts if fallback_ts is not None else 0
        self._lines = int(state.get("lines", 0))
        self._old_format: bool = bool(state.get("old_format", False))
        self._order = int(state.get("order", 1))
        self._keys = Counter(state.get("keys"))
        self._twice: dict[str, list[Any]] = dict(state.get("twice", {}))
        self._seen: dict[str, int] = dict.fromkeys(state.get("seen", []), 1)
        self._tools: dict[str, str] = dict(state.get("tools", {}))
        self._called: dict[str, Any] = dict(state.get("called", {}))
        self._durations: dict[str, Any] = dict(state.get("durations", {}))
        self._exits: dict[str, Any] = dict(state.get("exits", {}))
        self._edits: dict[str, int] = dict.fromkeys(state.get("edits", []), 1)
        self._quota: dict[str, int] = dict(state.get("quota", {}))
        self._compaction: dict[str, Any] | None = state.get("compaction")
        target = state.get("target")
        #: the latest event a turn's token usage would go on (None: none since the boundary)
        self._target: Event | None = Event(**target) if target else None

    def state(self) -> dict[str, Any]:
        self._twice = {k: v for k, v in self._twice.items() if v[0] >= self._order - 1}
        return {
            "lines": self._lines,
            "old_format": self._old_format,
            "order": self._order,
            "keys": self._keys.state(),
            "twice": self._twice,
            "seen": list(_bounded(self._seen)),
            "tools": _bounded(self._tools),
            "called": _bounded(self._called),
            "durations": _bounded(self._durations),
            "exits": _bounded(self._exits),
            "edits": list(_bounded(self._edits)),
            "quota": self._quota,
            "compaction": self._compaction,
            "target": asdict(self._target) if self._target else None,
        }

    def line(self, record: dict[str, Any] | None) -> None:
        first = self._lines == 0
        self._lines += 1
        if first:
            self._old_format = record is not None and _old_format(record)
        if record is None:
            return  # the CLI counts it invalid and goes on
        if self._old_format:
            stamp = record.get("timestamp")
            record = {
                "timestamp": stamp if isinstance(stamp, str) else None,
                "type": "session_meta" if first else "response_item",
                "payload": record,
            }
        stamp = record.get("timestamp")
        ts = _timestamp(stamp) if _js.truthy(stamp) else self._fallback_ts
        kind = record.get("type")
        payload = record.get("payload")
        if kind == "compacted":
            window = payload if isinstance(payload, dict) else {}
            self._compaction = {
                "sequenceNumber": window.get("window_number"),
                "previousCompactionId": window.get("previous_window_id"),
            }
        if kind == "event_msg" and isinstance(payload, dict):
            self._event_msg(payload, ts)
        if kind == "response_item" and isinstance(payload, dict):
            self._response_item(payload, ts)

    # -- event_msg ---------------------------------------------------------------------

    def _event_msg(self, p: dict[str, Any], ts: int | float) -> None:
        kind = p.get("type")
        call_id = p.get("call_id") if isinstance(p.get("call_id"), str) else None
        if kind == "patch_apply_end":
            self._edit(p, ts)
        if kind in ("exec_command_end", "mcp_tool_call_end"):
            duration = p.get("duration")
            secs = duration.get("secs") if isinstance(duration, dict) else None
            nanos = duration.get("nanos") if isinstance(duration, dict) else None
            if call_id and (_js.is_number(secs) or _js.is_number(nanos)):
                ms = (secs if _js.is_number(secs) else 0) * 1000
                self._durations[call_id] = ms + (nanos if _js.is_number(nanos) else 0) / 1e6
            if call_id and _js.is_number(p.get("exit_code")):
                self._exits[call_id] = p["exit_code"]
        if kind == "context_compacted":
            data: dict[str, Any] = {}
            earlier = self._compaction or {}
            if _js.is_number(earlier.get("sequenceNumber")):
                data["sequenceNumber"] = earlier["sequenceNumber"]
            if _js.truthy(earlier.get("previousCompactionId")):
                data["previousCompactionId"] = earlier["previousCompactionId"]
            self._compaction = None
            self._push(
                "system_event", ts, ("system_event", None, "system_event", None),
                subtype="compaction", data=data,
            )  # fmt: skip
        if kind == "user_message" and _js.truthy(p.get("message")):
            self._text("user", p["message"], ts, "event_msg")
        if kind == "agent_message" and _js.truthy(p.get("message")):
            self._text("assistant", p["message"], ts, "event_msg")
        if kind == "agent_reasoning" and _js.truthy(p.get("text")):
            self._push(
                "agent_thinking", ts, ("reasoning", None, "thinking", None), content=p["text"]
            )
        if kind == "token_count" and _js.truthy(p.get("rate_limits")):
            self._quotas(p["rate_limits"], ts)
        if kind == "token_count":
            self._token_usage(p)
        if kind in ("task_started", "turn_aborted"):
            self._target = None
        if kind in ("task_complete", "turn_aborted"):
            self._turn_end(p, ts)
            self._target = None

    def _edit(self, p: dict[str, Any], ts: int | float) -> None:
        changes = _changes(p.get("changes"))
        call_id = p.get("call_id")
        seen = f"workspace.edit:{call_id}" if _js.truthy(call_id) else None
        if not changes or (seen is not None and seen in self._edits):
            return
        if seen is not None:
            self._edits[seen] = 1
        data: dict[str, Any] = {}
        if _js.truthy(call_id):
            data["callId"] = call_id
        if isinstance(p.get("success"), bool):
            data["success"] = p["success"]
        data["changes"] = changes
        native = call_id if isinstance(call_id, str) else None
        self._push(
            "system_event", ts, ("workspace.edit", native, "workspace.edit", native),
            subtype="workspace.edit", data=data,
        )  # fmt: skip

    def _quotas(self, limits: Any, ts: int | float) -> None:
        if not isinstance(limits, dict):
            return
        for window in ("primary", "secondary"):
            limit = limits.get(window)
            if not _js.truthy(limit) or not isinstance(limit, dict):
                continue
            used = limit.get("used_percent")
            if not _js.is_number(used):
                continue
            step = max((s for s in _QUOTA_STEPS if used >= s), default=0)
            before = self._quota.get(window, 0)
            if step <= before:
                if step < before:
                    self._quota[window] = step
                continue
            self._quota[window] = step
            data: dict[str, Any] = {"window": window, "usedPercent": used}
            if _js.is_number(limit.get("window_minutes")):
                data["windowMinutes"] = limit["window_minutes"]
            resets = _resets_at(limit, ts)
            if resets is not None:
                data["resetsAt"] = resets
            if isinstance(limits.get("plan_type"), str):
                data["planType"] = limits["plan_type"]
            self._push(
                "system_event", ts, ("quota.limit", None, "quota.limit", None),
                subtype="quota.limit", data=data,
            )  # fmt: skip

    def _token_usage(self, p: dict[str, Any]) -> None:
        info = p.get("info")
        last = _usage(info.get("last_token_usage") if isinstance(info, dict) else None)
        if last is None or self._target is None:
            return
        updated = replace(self._target, token_usage=last)
        self._target = None
        for n, event in enumerate(self.events):
            if event.order == updated.order:
                self.events[n] = updated
                return
        self.events.append(updated)  # returned by an earlier read: again, with its usage

    def _turn_end(self, p: dict[str, Any], ts: int | float) -> None:
        done = p.get("completed_at")
        timing = _ended(done * 1000, p.get("duration_ms")) if _js.is_finite(done) else {}
        if "durationMs" not in timing:
            return
        kind = "turn_aborted" if p.get("type") == "turn_aborted" else "turn_duration"
        data: dict[str, Any] = {"durationMs": timing["durationMs"]}
        if kind == "turn_aborted":
            data["aborted"] = True
        turn = p.get("turn_id") if isinstance(p.get("turn_id"), str) else None
        self._push("system_event", ts, (kind, turn, kind, turn), subtype="turn_duration", data=data)

    # -- response_item -----------------------------------------------------------------

    def _response_item(self, p: dict[str, Any], ts: int | float) -> None:
        kind = p.get("type")
        native = p.get("id") if isinstance(p.get("id"), str) else None
        call = p.get("call_id")
        call_native = call if isinstance(call, str) else None
        if kind == "message" and _js.truthy(p.get("role")):
            text = out.text_of(p.get("content"))
            if _js.truthy(text) and p["role"] in ("user", "assistant"):
                self._text(p["role"], _js.string(text), ts, "response_item", native)
        if self._old_format and kind == "reasoning":
            summary = out.summary_text(p.get("summary"))
            if summary:
                self._push(
                    "agent_thinking", ts, ("reasoning", native, "thinking", None), content=summary
                )
        # the two kinds of call take their name and arguments from different fields; their
        # outputs are read alike (only the id made up for a call without one differs)
        if kind == "function_call":
            call_id = _call_id(call, f"call-{self._order}")
            name = out.tool_name(p.get("name"), p.get("namespace"))
            args = out.arguments(p.get("arguments"))
            self._call("function_call", call_id, name, args, ts, call_native, register=True)
        if kind == "custom_tool_call":
            call_id = _call_id(call, f"custom-call-{self._order}")
            name = _js.string(p["name"]) if p.get("name") is not None else "unknown"
            given = p.get("input") if p.get("input") is not None else p.get("arguments")
            args = out.arguments(given)
            self._call("custom_tool_call", call_id, name, args, ts, call_native, register=True)
        if kind in ("function_call_output", "custom_tool_call_output"):
            prefix = "call" if kind == "function_call_output" else "custom-call"
            call_id = _call_id(call, f"{prefix}-{self._order}")
            result = out.tool_result(p.get("output"))
            name = self._tools.get(call_id, "unknown")
            self._result(kind, call_id, name, result, ts, call_native)
        if kind == "web_search_call":
            call_id = _call_id(call, f"web-search-{self._order}")
            action = p.get("action") if p.get("action") is not None else {}
            self._call("web_search_call", call_id, "web_search", action, ts, native, register=False)
        if kind == "tool_search_call":
            call_id = _call_id(call, f"tool-search-{self._order}")
            args = out.arguments(p.get("arguments"))
            self._call(
                "tool_search_call", call_id, "tool_search", args, ts, call_native, register=True
            )
        if kind == "tool_search_output":
            call_id = _call_id(call, f"tool-search-{self._order}")
            found = p.get("output") if p.get("output") is not None else p.get("tools")
            result = out.Output(out.tool_result(found).text, "success")
            name = self._tools.get(call_id, "tool_search")
            self._result("tool_search_output", call_id, name, result, ts, call_native)

    # -- the CLI's closures: C (texts), x (tool calls), Y (tool results) ---------------

    def _text(
        self, role: str, text: str, ts: int | float, source: str, native: str | None = None
    ) -> None:
        squeezed = _js.squeeze(text)
        if not squeezed:
            return
        if not self._old_format:
            seen = _digest(f"{source}:{role}:{_js.string(ts)}:{squeezed}")
            if seen in self._seen:
                return
            self._seen[seen] = 1
        said = _digest(f"{role}:{squeezed}")
        earlier = self._twice.get(said)
        if earlier is not None:
            order, when, where = earlier
            close = abs(self._order - order) <= 1 and abs(ts - when) <= _TWICE_MS
            if close and (where != source or source == "event_msg"):
                return
        if role == "user":
            injected = out.skill(text)
            if injected is not None:
                call_id = native if native is not None else f"skill-injection-{self._order}"
                self._skill(injected, call_id, ts)
                self._twice[said] = [self._order - 1, ts, source]
                return
        order = self._order
        if role == "user":
            self._push("user_message", ts, ("user", native, "text", None), content=text)
        else:
            self._push("agent_text", ts, ("assistant", native, "text", None), content=text)
        self._twice[said] = [order, ts, source]

    def _skill(self, skill: out.Skill, call_id: str, ts: int | float) -> None:
        args: dict[str, Any] = {"name": skill.name, "sourceFormat": "codex-injection"}
        if skill.path:
            args["path"] = skill.path
        ids = ("skill_injection", call_id, "tool_call", call_id)
        self._push("tool_call", ts, ids, call_id=call_id, tool_name="skill", args=args)
        ids = ("skill_injection", call_id, "tool_result", call_id)
        self._push(
            "tool_result", ts, ids,
            call_id=call_id, tool_name="skill", output=skill.raw, status="success",
        )  # fmt: skip

    def _call(
        self,
        message_type: str,
        call_id: str,
        name: str,
        args: Any,
        ts: int | float,
        native: str | None,
        *,
        register: bool,
    ) -> None:
        if register:
            self._tools[call_id] = name
        self._called[call_id] = ts
        ids = (message_type, native, "tool_call", native)
        self._push("tool_call", ts, ids, call_id=call_id, tool_name=name, args=args)

    def _result(
        self,
        message_type: str,
        call_id: str,
        name: str,
        result: out.Output,
        ts: int | float,
        native: str | None,
    ) -> None:
        timing = self._timing(call_id, ts)
        exit_code = self._exits.pop(call_id, None)
        status = "error" if exit_code is not None and exit_code != 0 else result.status
        ids = (message_type, native, "tool_result", native)
        self._push(
            "tool_result", ts, ids,
            call_id=call_id, tool_name=name, output=result.text or "(empty result)",
            status=status, started_at=timing.get("startedAt"),
            completed_at=timing.get("completedAt"), duration_ms=timing.get("durationMs"),
        )  # fmt: skip

    def _timing(self, call_id: str, ts: int | float) -> dict[str, Any]:
        """The CLI's `w`: Codex's own duration of the call, else the time since the call."""
        took = self._durations.pop(call_id, None)
        if took is not None:
            ms = _js.round_half_up(took)
            return _ended(ts, ms) if ms >= 1 else {}
        start = self._called.get(call_id)
        if start is None or not _js.is_finite(start):
            return {}
        if ts < start:
            return {}
        took = _js.plain(ts - start)
        return {"startedAt": start, "completedAt": ts, "durationMs": took} if took >= 1 else {}

    def _push(
        self,
        kind: Kind,
        ts: int | float,
        ids: tuple[str, str | None, str, str | None],
        **fields: Any,
    ) -> None:
        message_type, message_native, part_type, part_native = ids
        event = Event(
            kind=kind,
            order=self._order,
            timestamp=ts,
            message_key=self._keys(message_type, message_native),
            part_key=key(part_type, part_native, 0),
            **fields,
        )
        self._order += 1
        self.events.append(event)
        if kind in _TOKEN_TARGETS:
            self._target = event


def _old_format(record: dict[str, Any]) -> bool:
    """The CLI's `nF`: a rollout of Codex's first format (lines without a `type`)."""
    return not isinstance(record.get("type"), str) and isinstance(record.get("id"), str)


def _timestamp(value: Any) -> int | float:
    """The CLI's `parseTimestamp` (an unreadable time is the moment of reading, as there)."""
    if _js.is_number(value):
        return _js.plain(value)
    parsed = _js.date_parse(value) if isinstance(value, str) else None
    return parsed if parsed is not None else _js.now_ms()


def _call_id(call: Any, fallback: str) -> str:
    return _js.string(call) if call is not None else fallback


def _ended(end: int | float, took: Any) -> dict[str, Any]:
    """The CLI's `uc`: a span that ended at `end` and took `took` ms."""
    if not _js.is_finite(took) or took < 0:
        return {}
    end = _js.plain(end)
    return {"startedAt": max(0, end - took), "completedAt": end, "durationMs": _js.plain(took)}


def _usage(counts: Any) -> dict[str, Any] | None:
    """`mapCodexTokenUsage`."""
    if not _js.truthy(counts) or not isinstance(counts, dict):
        return None
    return usage(
        {
            "totalInputTokenCount": _tokens.count(counts.get("input_tokens")),
            "outputTokenCount": _tokens.count(counts.get("output_tokens")),
            "cacheReadTokenCount": _tokens.count(counts.get("cached_input_tokens")),
            "reasoningTokenCount": _tokens.count(counts.get("reasoning_output_tokens")),
        }
    )


def _changes(changes: Any) -> list[dict[str, Any]]:
    """The CLI's `Qdt`: a patch's changed paths."""
    if not isinstance(changes, dict):
        return []
    found: list[dict[str, Any]] = []
    for path, change in changes.items():
        if not path or not isinstance(change, dict):
            continue
        kind = change.get("type")
        if kind not in ("add", "update", "delete"):
            continue
        entry: dict[str, Any] = {"path": path, "changeType": kind}
        moved = change.get("move_path")
        if isinstance(moved, str) and moved:
            entry["movePath"] = moved
        found.append(entry)
    return found


def _resets_at(limit: dict[str, Any], ts: int | float) -> int | float | None:
    """The CLI's `Kdt`."""
    if _js.is_finite(limit.get("resets_at")):
        return _js.plain(limit["resets_at"] * 1000)
    if _js.is_finite(limit.get("resets_in_seconds")):
        return _js.plain(ts + limit["resets_in_seconds"] * 1000)
    return None


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _bounded(entries: dict[str, _V]) -> dict[str, _V]:
    """The newest REMEMBERED entries (dicts keep insertion order)."""
    if len(entries) <= REMEMBERED:
        return entries
    return dict(list(entries.items())[-REMEMBERED:])
