"""Claude Code: a session's JSON lines read into the CLI's events (its `Hi` adapter ported).

Each processed line takes the next message key of its type (`<type>:<uuid>`) whether or not
it becomes an event; a line with several content blocks becomes one event per block under
that key, the part keys counted per line (`thinking:`, `tool_use:<id>`, `text:`,
`tool_result:<id>`, `system_event:`). The order is the CLI's `eventOrder`, one per event in
reading order, except that an assistant line's text comes after its thoughts and tool calls.

Token usage is counted once per API message (`message.id`, else `requestId`): the first
thought, tool call or text of the first line carrying it gets it (the carrier); a later line
of the same message replaces the carrier's usage, so this reader sends the carrier again
with the new usage (same order and keys: the follower takes it as a change). A
`compact_boundary` becomes a compaction event when the next line is read (the summary line
right after it adds its summary); until then it is sent as it stands and sent again once
complete. Only appended bytes are read; `Position.state` keeps what later lines need.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tracesd.messages import keys
from tracesd.messages.event import Event, Kind, usage
from tracesd.messages.readers import Position, Read, Unreadable, _js, _lines, _tokens
from tracesd.messages.readers import _claude_code_records as records
from tracesd.models import Trace

SKIPPED_ENTRY_TYPES = frozenset(
    {
        "file-history-snapshot",
        "summary",
        "mode",
        "ai-title",
        "last-prompt",
        "pr-link",
        "agent-name",
        "worktree-state",
        "queue-operation",
        "file-history-delta",
    }
)
CAPTURED_LOCAL_COMMANDS = frozenset({"/model", "/plugin", "/resume", "/usage"})
#: the CLI's own bound on local commands waiting for their output
MAX_PENDING_LOCAL_COMMANDS = 32
_WRITERS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
_ANSI = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]")
#: the CLI's `/^<.*>$/` test for a stand-in model name (`.` stops at line ends)
_STAND_IN = re.compile("<[^\n\r\u2028\u2029]*>")

# Bounds on what Position.state remembers (the CLI keeps all of it for one read of a file):
#: open tool calls (call id -> tool name) and paths the agent wrote
MAX_CALLS = 10_000
MAX_WRITTEN = 2_000
#: API message ids whose usage is counted, and the carriers a later line may still update
MAX_SEEN_USAGE = 2_000
MAX_CARRIERS = 16


class ClaudeCodeReader:
    def read(self, trace: Trace, position: Position) -> Read:
        if not trace.source_path:
            raise Unreadable(f"{trace.id}: no session file")
        lines = _lines.appended(trace.source_path, position)
        state = {} if lines.restarted else position.state
        session = _Session(state, trace.timestamp)
        for record in lines.records:
            if record is None:
                continue  # the CLI counts it invalid and reads on
            kind = record.get("type")
            if isinstance(kind, str) and kind in SKIPPED_ENTRY_TYPES:
                continue
            session.process(record)
        session.finish()
        return Read(
            session.events,
            Position(lines.offset, session.state(), lines.file),
            more=lines.more,
        )


class _Session:
    """The CLI's parse state (`pendingToolCalls`, `seenTokenUsageKeys`, ...), carried
    between reads as JSON."""

    def __init__(self, state: Any, fallback_time: int | None) -> None:
        self.fallback_time = fallback_time
        self.order: int = state.get("order", 1)
        self.message_keys = keys.Counter(state.get("keys"))
        self.calls: dict[str, str] = dict(state.get("calls", {}))
        self.written: list[str] = list(state.get("written", []))
        self.skills_pending: list[str] = list(state.get("skills_pending", []))
        self.skills_ok: list[str] = list(state.get("skills_ok", []))
        self.local: dict[str, str] = dict(state.get("local", {}))
        self.mode: Any = state.get("mode")
        self.seen: list[str] = list(state.get("seen", []))
        self.carriers: dict[str, dict[str, Any]] = dict(state.get("carriers", {}))
        self.compaction: dict[str, Any] | None = state.get("compaction")
        self.compaction_sent: bool = state.get("compaction_sent", False)
        self.events: list[Event] = []
        #: carriers read in this read: message id -> index in `events`
        self._here: dict[str, int] = {}

    def state(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "keys": self.message_keys.state(),
            "calls": dict(list(self.calls.items())[-MAX_CALLS:]),
            "written": self.written[-MAX_WRITTEN:],
            "skills_pending": self.skills_pending,
            "skills_ok": self.skills_ok,
            "local": self.local,
            "mode": self.mode,
            "seen": self.seen[-MAX_SEEN_USAGE:],
            "carriers": dict(list(self.carriers.items())[-MAX_CARRIERS:]),
            "compaction": self.compaction,
            "compaction_sent": self.compaction_sent,
        }

    def finish(self) -> None:
        """A compaction still waiting for the next line is sent as it stands (the CLI
        flushes it at the end of the file); it is sent again if a summary follows."""
        if self.compaction is not None and not self.compaction_sent:
            self.events.append(_event(self.compaction))
            self.compaction_sent = True

    def process(self, e: dict[str, Any]) -> None:
        """The CLI's `processEntry` for one line (an error in it ends the line's events
        there, as the CLI's throw does)."""
        with contextlib.suppress(TypeError, AttributeError, ValueError, KeyError, IndexError):
            _Line(self, e).process()

    def next_order(self) -> int:
        order = self.order
        self.order += 1
        return order

    def flush_compaction(self, summary: str | None) -> None:
        pending, self.compaction = self.compaction, None
        if pending is None:
            return
        if summary:
            pending["data"] = {**pending["data"], "summary": summary}
        if summary or not self.compaction_sent:
            self.events.append(_event(pending))
        self.compaction_sent = False

    def update_carrier(self, usage_key: str, counts: dict[str, Any]) -> None:
        """A later line of an API message replaces its carrier's usage (`tokenUsageCarriers`)."""
        if usage_key in self._here:
            index = self._here[usage_key]
            self.events[index] = _with_usage(self.events[index], counts)
        carrier = self.carriers.get(usage_key)
        if carrier is None or carrier.get("token_usage") == counts:
            return
        carrier["token_usage"] = counts
        if usage_key not in self._here:
            self._here[usage_key] = len(self.events)
            self.events.append(_event(carrier))

    def add_carrier(self, usage_key: str, event: Event) -> None:
        self.seen.append(usage_key)
        self.carriers.pop(usage_key, None)
        self.carriers[usage_key] = asdict(event)
        self._here[usage_key] = len(self.events)


class _Line:
    """One line being processed (`processEntry`'s locals)."""

    def __init__(self, session: _Session, e: dict[str, Any]) -> None:
        self.s = session
        self.e = e
        kind = e.get("type", _js.UNDEFINED)
        self.uuid = e.get("uuid", _js.UNDEFINED)
        self.message_key = session.message_keys(_js.string(kind), _native(self.uuid))
        self.parts = keys.Counter()
        stamp = e.get("timestamp")
        time: int | float | None = None
        if isinstance(stamp, str):
            time = _js.date_parse(stamp)
        elif _js.is_number(stamp):
            time = stamp
        self.time = time if time is not None else session.fallback_time
        message = e.get("message", _js.UNDEFINED)
        usage_key = _js.get(message, "id")
        if _js.nullish(usage_key):
            usage_key = e.get("requestId", _js.UNDEFINED)
        self.usage_key = _js.string(usage_key) if _js.truthy(usage_key) else None
        assistant = kind == "assistant" and self.usage_key is not None
        self.counts = _token_usage(_js.get(message, "usage")) if assistant else None
        self.carry: dict[str, Any] | None = None
        if assistant and self.usage_key is not None:
            if self.usage_key in session.seen and self.counts is not None:
                session.update_carrier(self.usage_key, self.counts)
            if self.usage_key not in session.seen:
                self.carry = self.counts

    # -- emitting -------------------------------------------------------------------------

    def emit(self, kind: Kind, part_type: str, native: Any, **fields: Any) -> None:
        event = Event(
            kind=kind,
            order=self.s.next_order(),
            timestamp=self.time,
            message_key=self.message_key,
            part_key=self.parts(part_type, _native(native)),
            **fields,
        )
        if self.carry is not None and kind in ("agent_text", "agent_thinking", "tool_call"):
            event = _with_usage(event, self.carry)
            self.carry = None
            if self.usage_key is not None:
                self.s.add_carrier(self.usage_key, event)
        self.s.events.append(event)

    def system(self, subtype: str, data: dict[str, Any]) -> None:
        self.emit(
            "system_event", "system_event", self.uuid, subtype=subtype, data=_js.defined(data)
        )

    # -- the line -------------------------------------------------------------------------

    def process(self) -> None:
        e, s = self.e, self.s
        if s.compaction is not None:
            summary = (
                _compact_summary(_js.get(e.get("message"), "content"))
                if _js.truthy(e.get("isCompactSummary"))
                else None
            )
            s.flush_compaction(summary)
        if _js.truthy(e.get("isCompactSummary")):
            return
        kind = e.get("type")
        if kind == "attachment":
            for made in records.attachment(e.get("attachment"), s.written):
                if isinstance(made, records.Prompt):
                    self.emit("user_message", "text", self.uuid, content=made.text)
                else:
                    self.system(made.subtype, made.data)
            return
        if kind == "user" and _js.truthy(e.get("message")):
            self.user(e["message"])
        if kind == "assistant" and _js.truthy(e.get("message")):
            self.assistant(e["message"])
        subtype = e.get("subtype")
        if kind == "system" and subtype == "local_command":
            self.local_command()
            return
        if kind == "permission-mode" and _js.truthy(e.get("permissionMode")):
            if e["permissionMode"] != s.mode:
                s.mode = e["permissionMode"]
                self.system("permission_mode", {"mode": e["permissionMode"]})
            return
        if kind != "system":
            return
        content = e.get("content")
        if subtype == "informational" and isinstance(content, str):
            level = e.get("level")
            self.system(
                "informational",
                {"message": content, **({"level": level} if _js.truthy(level) else {})},
            )
            return
        if subtype == "scheduled_task_fire" and isinstance(content, str):
            self.system("scheduled_task_fire", {"message": content})
            return
        if subtype == "agents_killed":
            self.system("agents_killed", {})
            return
        if subtype == "stop_hook_summary":
            made = records.stop_hooks(e)
            self.system(made.subtype, made.data)
        if subtype == "turn_duration":
            data = {n: e[n] for n in ("durationMs", "messageCount") if _js.is_number(e.get(n))}
            self.system("turn_duration", data)
        if subtype == "compact_boundary":
            self.compact_boundary(e.get("compactMetadata"))

    def user(self, message: Any) -> None:
        s = self.s
        content = _js.get(message, "content")
        text, native = "", None
        if isinstance(content, str):
            text = content  # untrimmed, as the CLI takes it (an assistant's is trimmed)
        elif isinstance(content, list):
            text, native = self.texts(content, self.user_block)
        if not text:
            return
        if self.attaches_skill_document(text):
            call = s.skills_pending.pop(0)
            if call in s.skills_ok:
                s.skills_ok.remove(call)
            self.emit(
                "tool_result",
                "tool_result",
                call,
                call_id=call,
                tool_name="skill",
                output=text,
                status="success",
            )
        else:
            self.emit("user_message", "text", native, content=text)

    def user_block(self, kind: Any, block: Any) -> None:
        if kind == "tool_result":
            self.tool_result(block)

    def tool_result(self, block: dict[str, Any]) -> None:
        s = self.s
        failed = _js.truthy(block.get("is_error"))
        body = block.get("content")
        output = ""
        if isinstance(body, str):
            output = body
        elif isinstance(body, list):
            output = "\n".join(_result_piece(piece) for piece in body)
        call = block.get("tool_use_id")
        call_key = _js.string(call) if _js.truthy(call) else None
        name = s.calls.get(call_key) if call_key is not None else None
        skill_ok = name == "skill" and not failed
        if skill_ok and call_key is not None and call_key not in s.skills_ok:
            s.skills_ok.append(call_key)
        if not skill_ok:
            order = s.order
            self.emit(
                "tool_result",
                "tool_result",
                call,
                call_id=call_key if call_key is not None else f"unknown-{order}",
                tool_name=name or "unknown",
                output=output or "(empty result)",
                status="error" if failed else "success",
            )
        if call_key is not None:
            s.calls.pop(call_key, None)
            if name == "skill" and failed:
                if call_key in s.skills_pending:
                    s.skills_pending.remove(call_key)
                if call_key in s.skills_ok:
                    s.skills_ok.remove(call_key)

    def attaches_skill_document(self, text: str) -> bool:
        """The CLI's `shouldAttachClaudeSkillDocument`."""
        s = self.s
        if not s.skills_pending or not s.skills_pending[0]:
            return False
        if (
            self.e.get("isMeta") is True
            and s.skills_pending[0] in s.skills_ok
            and not text.startswith("<local-command-caveat>")
        ):
            return True
        return text.startswith("Base directory for this skill:")

    def assistant(self, message: Any) -> None:
        model = _js.get(message, "model")
        if _js.truthy(model) and isinstance(model, str) and _STAND_IN.fullmatch(_js.trim(model)):
            model = _js.UNDEFINED
        content = _js.get(message, "content")
        text, native = "", None
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text, native = self.texts(content, self.assistant_block)
        text = _js.trim(text)
        if text:
            model = None if _js.nullish(model) else model
            self.emit("agent_text", "text", native, content=text, model=model)

    def assistant_block(self, kind: Any, block: Any) -> None:
        if kind == "thinking" and _js.truthy(_js.get(block, "thinking")):
            self.emit("agent_thinking", "thinking", _js.get(block, "id"), content=block["thinking"])
        if kind == "tool_use" and _js.truthy(_js.get(block, "name")):
            self.tool_use(block)

    def texts(self, blocks: list[Any], other: Callable[[Any, Any], None]) -> tuple[str, Any]:
        """A message's text blocks, one per line and trimmed, with the native id of the
        text when exactly one of them has one; `other(type, block)` takes every other block
        in its place (its events come before the text's)."""
        text = ""
        ids: list[Any] = []
        for block in blocks:
            if block is None:
                raise TypeError("null block")
            kind = _js.get(block, "type")
            if kind == "text" and _js.truthy(_js.get(block, "text")):
                text += _js.string(block["text"]) + "\n"
                if _js.truthy(_js.get(block, "id")):
                    ids.append(block["id"])
            else:
                other(kind, block)
        return _js.trim(text), ids[0] if len(ids) == 1 else None

    def tool_use(self, block: dict[str, Any]) -> None:
        s = self.s
        native = block.get("id")
        call = _js.string(native) if _js.truthy(native) else f"call-{s.order}"
        name = block["name"]
        args: Any
        if name in ("Skill", "skill"):
            name, args = "skill", _skill_args(block.get("input"))
        else:
            given = block.get("input")
            args = given if _js.truthy(given) else {}
        s.calls.pop(call, None)
        s.calls[call] = _js.string(name)
        if name == "skill":
            s.skills_pending.append(call)
        if block["name"] in _WRITERS:
            written = _written_path(block.get("input"))
            if written and written not in s.written:
                s.written.append(written)
        self.emit("tool_call", "tool_use", native, call_id=call, tool_name=name, args=args)

    def local_command(self) -> None:
        s, e = self.s, self.e
        content = e.get("content")
        name = records.field(content, "command-name")
        if name:
            if name in CAPTURED_LOCAL_COMMANDS:
                if _js.truthy(self.uuid):
                    if len(s.local) >= MAX_PENDING_LOCAL_COMMANDS:
                        s.local.pop(next(iter(s.local)))
                    s.local.pop(_js.string(self.uuid), None)
                    s.local[_js.string(self.uuid)] = name
                self.system(
                    "local_command",
                    {
                        "kind": "invocation",
                        "commandName": name,
                        "commandMessage": records.field(content, "command-message") or "",
                        "arguments": records.field(content, "command-args") or "",
                    },
                )
            return
        stdout = records.field(content, "local-command-stdout")
        parent = e.get("parentUuid")
        invoked = s.local.pop(_js.string(parent), None) if _js.truthy(parent) else None
        if stdout is not None and invoked in CAPTURED_LOCAL_COMMANDS:
            self.system(
                "local_command",
                {"kind": "output", "commandName": invoked, "output": _ANSI.sub("", stdout)},
            )

    def compact_boundary(self, meta: Any) -> None:
        data: dict[str, Any] = {}
        trigger = _js.get(meta, "trigger")
        if trigger in ("manual", "auto"):
            data["trigger"] = trigger
        for theirs, ours in (
            ("preTokens", "tokensBefore"),
            ("postTokens", "tokensAfter"),
            ("cumulativeDroppedTokens", "cumulativeDroppedTokens"),
            ("durationMs", "durationMs"),
        ):
            if _js.is_number(_js.get(meta, theirs)):
                data[ours] = meta[theirs]
        anchor = _js.get(_js.get(meta, "preservedMessages"), "anchorUuid")
        if _js.truthy(anchor):
            data["retainedFromId"] = anchor
        event = Event(
            kind="system_event",
            order=self.s.next_order(),
            timestamp=self.time,
            message_key=self.message_key,
            part_key=self.parts("system_event", _native(self.uuid)),
            subtype="compaction",
            data=data,
        )
        self.s.compaction = asdict(event)
        self.s.compaction_sent = False


def _event(fields: dict[str, Any]) -> Event:
    return Event(**fields)


def _with_usage(event: Event, counts: dict[str, Any]) -> Event:
    return Event(**{**asdict(event), "token_usage": counts})


def _native(value: Any) -> str | None:
    """A native id as `Ho` takes it (`nativeId?.trim()`; another type throws there)."""
    if _js.nullish(value):
        return None
    if not isinstance(value, str):
        raise TypeError("nativeId.trim is not a function")
    return value


def _token_usage(counts: Any) -> dict[str, Any] | None:
    """`mapClaudeCodeTokenUsage`: the counts that are non-negative finite numbers, floored."""
    if not _js.truthy(counts) or not isinstance(counts, dict):
        return None
    return usage(
        {
            "inputTokenCount": _tokens.count(counts.get("input_tokens")),
            "outputTokenCount": _tokens.count(counts.get("output_tokens")),
            "cacheReadTokenCount": _tokens.count(counts.get("cache_read_input_tokens")),
            "cacheWriteTokenCount": _tokens.count(counts.get("cache_creation_input_tokens")),
        }
    )


def _result_piece(piece: Any) -> str:
    if isinstance(piece, str):
        return piece
    if _js.get(piece, "type") == "text" and _js.truthy(_js.get(piece, "text")):
        return _js.string(piece["text"])
    return _stringify(piece)


def _stringify(value: Any) -> str:
    """`JSON.stringify(value, null, 2)`."""
    return _js.stringify(value, 2)


def _skill_args(given: Any) -> dict[str, Any]:
    """`normalizeClaudeSkillTool`."""
    args: dict[str, Any] = {"sourceFormat": "claude-native"}
    name = _js.get(given, "skill") if not _js.nullish(given) else _js.UNDEFINED
    if isinstance(name, str) and _js.trim(name):
        args["name"] = _js.trim(name)
    arguments = _js.get(given, "args") if not _js.nullish(given) else _js.UNDEFINED
    if isinstance(arguments, str) and arguments:
        args["arguments"] = arguments
    return args


def _written_path(given: Any) -> str | None:
    if not _js.truthy(given):
        return None
    for name in ("file_path", "filePath", "path", "notebook_path"):
        value = _js.get(given, name)
        if isinstance(value, str) and value:
            return value
    return None


def _compact_summary(content: Any) -> str | None:
    if isinstance(content, str):
        return _js.trim(content) or None
    if isinstance(content, list):
        texts = [
            _js.string(b["text"])
            for b in content
            if _js.get(b, "type") == "text" and _js.truthy(_js.get(b, "text"))
        ]
        return _js.trim("\n".join(texts)) or None
    return None
