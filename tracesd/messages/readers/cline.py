"""Cline's messages, read as the real Traces CLI 0.6.31 reads them (its `cline` adapter's
`parseTraceContent`, ported).

The CLI reads a classic task's `api_conversation_history.json` (not the `ui_messages.json`
tracesd captures the task from) and an SDK session's `<id>.messages.json` (not its manifest
or the `sessions.db` row): an array of Anthropic-style messages (or an object holding one
under `messages`, `history` or `entries`). Each `user`/`assistant` entry is one message
(key `<role>:<id, uuid or messageId, else n>`); its content blocks become events in order:
text (a user's with Cline's envelopes taken off, or a `[tool] Result:` text as a tool
result), thinking, tool calls (plus the text of `attempt_completion` /
`ask_followup_question`), tool results (plus the `<feedback>` of an
`attempt_completion`). An assistant entry's `metrics` (or `usage`) go to its last text,
thinking or tool call.

Cline's messages rarely carry a time: an event's time is its entry's `ts` / `timestamp` /
`time`, else the time the CLI's listing gives the session: for a task the newest entry
time, else the history file's mtime; for an SDK session the messages file's `updated_at`,
else the manifest's `ended_at` / `updated_at` / `started_at`, else the newer mtime of the
two files. The document is re-read whole; an unchanged one is not read again.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from tracesd.messages.event import Event, usage
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _sequence, _tokens
from tracesd.models import Trace

AGENT_ID = "cline"

_HISTORY = "api_conversation_history.json"
#: JavaScript's `\s`
_JS_S = "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_TOOL_RESULT_TEXT = re.compile(
    rf"\[([a-zA-Z0-9_-]+)(?:{_JS_S}+for{_JS_S}+[\s\S]*?)?\]{_JS_S}+Result:{_JS_S}*([\s\S]*)\Z"
)
_HIDDEN_PREFIXES = (
    "# task_progress",
    "[ERROR] You did not use a tool",
    "New instructions for task continuation:",
    "Command executed.\nOutput:",
    "The user has provided feedback on the results.",
)
_THINKING = ("thinking", "reasoning", "redacted_thinking")
_TOOL_USE = ("tool_use", "tool-call", "tool_call")
_TOOL_RESULT = ("tool_result", "tool-result", "tool_response")
#: the events an entry's metrics may go on (the last of them gets them)
_WITH_USAGE = ("agent_text", "agent_thinking", "tool_call")


class ClineReader:
    def read(self, trace: Trace, position: Position) -> Read:
        source = messages_path(trace)
        manifest = _manifest_path(source)
        fingerprint = _document.stamp(source, manifest)
        if _document.unchanged(position, fingerprint):
            return Read([], position)
        document = _document.read_json(source)
        entries = _entries(document)
        if entries is None:
            raise Unreadable(f"{source}: no Cline messages")
        fallback = _listed_timestamp(source, manifest, document, entries)
        events = parse(entries, fallback)
        return Read(events, _document.after(fingerprint), whole=True)


def messages_path(trace: Trace) -> str:
    """The file the CLI reads for a session captured from `trace.source_path`: a classic
    task's history beside its `ui_messages.json`, an SDK session's messages file beside
    its manifest (or under `../sessions/<id>/` of the `db/sessions.db` it came from)."""
    source = trace.source_path
    if not source:
        raise Unreadable(f"cline session {trace.id} has no source file")
    folder, name = os.path.split(source)
    if name in ("ui_messages.json", "claude_messages.json"):
        return os.path.join(folder, _HISTORY)
    if name == trace.id + ".json":
        return os.path.join(folder, trace.id + ".messages.json")
    data = os.path.dirname(folder)
    return os.path.join(data, "sessions", trace.id, trace.id + ".messages.json")


def _manifest_path(source: str) -> str | None:
    if not source.endswith(".messages.json"):
        return None
    return source.removesuffix(".messages.json") + ".json"


def _entries(document: Any) -> list[Any] | None:
    """The CLI's `historyEntriesFromParsed`."""
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        return None
    for name in ("messages", "history", "entries"):
        if isinstance(document.get(name), list):
            listed: list[Any] = document[name]
            return listed
    return None


def _listed_timestamp(
    source: str, manifest: str | None, document: Any, entries: list[Any]
) -> int | float:
    """The session's `timestamp` in the CLI's listing, which its events fall back to."""
    if manifest is None:  # a classic task (`resolveTraceTimestamp`)
        newest: float = 0
        for entry in entries:
            if isinstance(entry, dict):
                stamp = _entry_time(entry, math.nan)
                if stamp == stamp and abs(stamp) != float("inf") and stamp > newest:
                    newest = stamp
        if newest > 0:
            return _js.plain(newest)
        return _positive(_js.mtime_ms(source))
    # an SDK session (`buildSessionMessagesTrace`)
    try:
        meta = _js.read_json(manifest)
    except (OSError, _js.NotJson):
        meta = None
    meta = meta if isinstance(meta, dict) else None
    files = max(_js.mtime_ms(source), _js.mtime_ms(manifest) if meta is not None else 0)
    value = document.get("updated_at") if isinstance(document, dict) else None
    if value is None and meta is not None:
        value = next(
            (v for k in ("ended_at", "updated_at", "started_at") if (v := meta.get(k)) is not None),
            None,
        )
    stamp = _js.timestamp(value, files)
    if stamp == stamp and stamp > 0:  # `resolveFallbackTimestamp`
        return _js.plain(stamp)
    return _positive(_js.mtime_ms(source))


def _positive(mtime: float) -> int | float:
    if mtime > 0:
        return _js.plain(mtime)
    raise Unreadable("the session file is gone")


def _entry_time(entry: dict[str, Any], fallback: float) -> float:
    """`parseEntryTimestamp`: `ts ?? timestamp ?? time`."""
    value = next((entry[k] for k in ("ts", "timestamp", "time") if entry.get(k) is not None), None)
    return _js.timestamp(value, fallback)


def parse(entries: list[Any], fallback: int | float) -> list[Event]:
    """The events of a Cline history (the CLI's `parseTraceContent`)."""
    parser = _Parser(fallback)
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            parser.entry(index, entry)
    return parser.events


class _Parser(_sequence.Sequence):
    def __init__(self, fallback: int | float) -> None:
        super().__init__()
        self.fallback = fallback
        #: call id -> tool name, in the order of the CLI's Map
        self.calls: dict[str, str] = {}
        # the entry being read
        self.role = ""
        self.model: str | None = None
        self.where = ""

    def entry(self, index: int, entry: dict[str, Any]) -> None:
        role = _js.pick_string(entry.get("role"))
        role = role.lower() if role else None
        if role not in ("user", "assistant"):
            return
        info = entry.get("modelInfo")
        info = info if isinstance(info, dict) else {}
        self.role = role
        self.model = _js.pick_string(
            entry.get("model"),
            entry.get("modelId"),
            entry.get("model_id"),
            info.get("modelId"),
            info.get("model"),
            info.get("id"),
        )
        at = _js.plain(_entry_time(entry, self.fallback))
        native = _js.pick_string(entry.get("id"), entry.get("uuid"), entry.get("messageId"))
        self.begin(role, native, at)
        first = len(self.events)
        content = entry.get("content")
        blocks = content if isinstance(content, list) else [] if content is None else [content]
        if not blocks:
            whole = _text_of(content) or _js.pick_string(entry.get("text"), entry.get("message"))
            if visible := _visible(role, whole):
                self.text(visible)
        for n, block in enumerate(blocks):
            self.where = f"entry-{index + 1}:block-{n + 1}"
            self.block(block)
        if role == "assistant":
            metrics, used = entry.get("metrics"), entry.get("usage")
            counts = (
                metrics if isinstance(metrics, dict) else used if isinstance(used, dict) else None
            )
            tokens = _usage(counts)
            if tokens is not None:
                _tokens.attach(self.events, first, tokens, _WITH_USAGE)

    def text(self, body: str) -> None:
        if self.role == "user":
            self.add("user_message", "text", content=body)
        else:
            self.add("agent_text", "text", content=body, model=self.model)

    def block(self, block: Any) -> None:
        role = self.role
        if isinstance(block, str):
            if visible := _visible(role, block):
                self.text(visible)
            return
        if not isinstance(block, dict):
            return
        kind = _js.pick_string(block.get("type"))
        kind = kind.lower() if kind else None
        if not kind or kind == "text":
            said = _first_text(block, "text", "content", "value", "message")
            result = self.text_tool_result(said) if role == "user" else None
            if result is not None:
                call_id, tool, output = result
                self.add_result(call_id, tool, output, failed=False)
                self.calls.pop(call_id, None)
                return
            if visible := _visible(role, said):
                self.text(visible)
                return
        if kind in _THINKING:
            thought = _first_text(block, "thinking", "text", "content")
            if thought and role == "assistant":
                self.add("agent_thinking", "thinking", content=thought)
                return
        if kind in _TOOL_USE:
            self.tool_call(block)
        elif kind in _TOOL_RESULT:
            self.tool_result(block)

    def tool_call(self, block: dict[str, Any]) -> None:
        call_id = _js.pick_string(block.get("id"), block.get("tool_use_id"), block.get("callId"))
        call_id = call_id or f"{self.where}:call"
        tool = _js.pick_string(block.get("name"), block.get("toolName")) or "unknown"
        args = _tool_args(_defined(block, "input", "args", "arguments"))
        self.calls[call_id] = tool
        self.add("tool_call", "tool_call", call_id, call_id=call_id, tool_name=tool, args=args)
        if self.role != "assistant":
            return
        said = None
        if tool == "attempt_completion":
            said = _text_of(args.get("result"))
        elif tool == "ask_followup_question":
            said = _text_of(args.get("question"))
        if said:
            self.add("agent_text", "text", content=said, model=self.model)

    def tool_result(self, block: dict[str, Any]) -> None:
        call_id = _js.pick_string(block.get("tool_use_id"), block.get("callId"), block.get("id"))
        call_id = call_id or f"{self.where}:call"
        named = _js.pick_string(block.get("name"), block.get("toolName"))
        tool = self.calls.get(call_id) or named or "unknown"
        output = _tool_output(_defined(block, "content", "output", "result"))
        status = _js.pick_string(block.get("status"))
        failed = block.get("is_error") is True or (status or "").lower() == "error"
        self.add_result(call_id, tool, output, failed=failed)
        feedback = _tagged(output, "feedback") if tool == "attempt_completion" else None
        if self.role == "user" and feedback:
            self.add("user_message", "text", content=feedback)

    def text_tool_result(self, said: str | None) -> tuple[str, str, str] | None:
        """`parseTextToolResult`: `[tool for '...'] Result: output` as a tool's result."""
        if not said:
            return None
        found = _TOOL_RESULT_TEXT.match(_js.trim(said))
        if not found:
            return None
        name = found.group(1)
        wanted = _alnum(name)
        call = next(((i, t) for i, t in self.calls.items() if _alnum(t) == wanted), None)
        output = _js.trim(found.group(2)) or "(no output)"
        if call is None:
            return f"{self.where}:call", name, output
        return call[0], call[1], output


def _alnum(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]", "", text).lower()


def _defined(block: dict[str, Any], *names: str) -> Any:
    """`a ?? b ?? c` over members of `block`."""
    return next((block[n] for n in names if block.get(n) is not None), None)


def _first_text(block: dict[str, Any], *names: str) -> str | None:
    return next((t for n in names if (t := _text_of(block.get(n)))), None)


def _text_of(value: Any) -> str | None:
    """`extractTextFromUnknown`."""
    if isinstance(value, str):
        return _js.trim(value) or None
    if isinstance(value, list):
        texts = [t for v in value if (t := _text_of(v))]
        return "\n".join(texts) if texts else None
    if isinstance(value, dict):
        names = ("text", "content", "message", "value", "output")
        return _js.pick_string(*(value.get(n) for n in names))
    return None


def _visible(role: str, text: str | None) -> str | None:
    """`extractVisibleText`: what a person said, Cline's envelopes taken off."""
    if not text:
        return None
    body = _js.trim(text)
    if not body or role == "assistant":
        return body or None
    for tag in ("user_message", "user_input", "feedback", "task"):
        if tagged := _tagged(body, tag):
            return tagged
    resumed = body.find("[TASK RESUMPTION]")
    if resumed >= 0 and (rest := _js.trim(body[resumed:])):
        return rest
    if "<environment_details>" in body or body.startswith(_HIDDEN_PREFIXES):
        return None
    return body


def _tagged(text: str, tag: str) -> str | None:
    """`extractTaggedText`: the trimmed inside of the first `<tag ...>...</tag>`."""
    pattern = f"<{tag}(?:{_JS_S}[^>]*)?>([\\s\\S]*?)</{tag}>"
    found = re.search(pattern, text, re.ASCII | re.IGNORECASE)
    if not found or not found.group(1):
        return None
    return _js.trim(found.group(1)) or None


def _tool_args(value: Any) -> dict[str, Any]:
    """`parseToolArgs`: an object, JSON text of one, else `{raw: value}` (`{}` for none)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = _js.parse_json(value)
        except _js.NotJson:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"raw": value}
    return {} if value is None else {"raw": value}


def _tool_output(value: Any) -> str:
    """`extractToolResultOutput`."""
    if said := _text_of(value):
        return said
    if value is None:
        return "(no output)"
    return value if isinstance(value, str) else _js.stringify(value, 2)


def _usage(counts: dict[str, Any] | None) -> dict[str, Any] | None:
    """`mapClineTokenUsage`."""
    if counts is None:
        return None
    reasoning = _defined(counts, "thoughtsTokenCount", "reasoningTokenCount", "reasoningTokens")
    return usage(
        {
            "outputTokenCount": _tokens.count(counts.get("outputTokens")),
            "cacheReadTokenCount": _tokens.count(counts.get("cacheReadTokens")),
            "cacheWriteTokenCount": _tokens.count(counts.get("cacheWriteTokens")),
            "reasoningTokenCount": _tokens.count(reasoning),
            "totalInputTokenCount": _tokens.count(counts.get("inputTokens")),
        }
    )
