"""GitHub Copilot Chat in VS Code (`chatSessions/<id>.json` or `.jsonl`) read as the CLI
reads it: a port of its VS Code session reader's `parseContent` (class `cF`).

The session is one document (a `.jsonl` is a patch log of it, see `_vscode_chat`), so it
is re-read whole when the file changed. Per request: the prompt (`vscode.request:<request
id>`, unless system-initiated), then the response items under `vscode.response:<request
id>`: markdown text, thinking, tool invocations (each its own `vscode.tool:<call id>`
message, call and result; text after a tool starts `vscode.response:<request id>:<index>`),
edits and warnings; a cancelled or failed request ends with an error
(`vscode.response-state:<request id>`). Part keys count per type within each message.
Every event of a request has the request's time; a tool result has its terminal's time.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from tracesd.messages.event import Event, Kind
from tracesd.messages.keys import Counter
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _vscode_chat
from tracesd.models import Trace

_ANSI = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]")
_SKIPPED_KINDS = frozenset(
    {"mcpServersStarting", "autoModeResolution", "inlineReference", "codeblockUri", "undoStop"}
)


class CopilotReader:
    def read(self, trace: Trace, position: Position) -> Read:
        path = trace.source_path
        if not path:
            raise Unreadable(f"{trace.id}: no chat session file")
        changed = _document.read_if_changed(path, position)
        if changed is None:
            return Read([], position)
        doc = _vscode_chat.document(changed.data, path.endswith(".jsonl"))
        events = _Session(trace.timestamp).read(doc) if doc is not None else []
        return Read(events, changed.position, whole=True)


class _Session:
    def __init__(self, fallback_ts: int | None) -> None:
        self._fallback = fallback_ts if fallback_ts is not None else 0
        self._events: list[Event] = []
        self._order = 1
        self._messages = Counter()
        self._parts = Counter()
        self._message_key = ""
        self._after_tool = False

    def read(self, doc: dict[str, Any]) -> list[Event]:
        first = _time(doc.get("creationDate"), self._fallback)
        for n, item in enumerate(_list(doc.get("requests"))):
            request = _record(item)
            if request is not None:
                first = self._request(request, n, first)
        return self._events

    def _request(self, d: dict[str, Any], n: int, first: int | float) -> int | float:
        rid = _string(d.get("requestId")) or f"request-{n}"
        ts = _time(d.get("timestamp"), first)
        state = _record(d.get("modelState"))
        done = _time(state.get("completedAt") if state else None, ts)
        message = _record(d.get("message"))
        prompt = _string(message.get("text") if message else None)
        if prompt and d.get("isSystemInitiated") is not True:
            self._start("vscode.request", rid)
            self._push("user_message", ts, "text", content=prompt)
        response = _list(d.get("response"))
        model = _model(d, response)
        self._start("vscode.response", rid)
        self._after_tool = False
        for j, block in enumerate(response):
            self._block(block, rid, j, ts, done, model)
        value = state.get("value") if state else None
        if value in (2, 3) and not isinstance(value, bool):
            result = _record(d.get("result"))
            details = _string(result.get("errorDetails") if result else None) or _string(
                result.get("details") if result else None
            )
            reason = details or ("Request cancelled" if value == 2 else "Request failed")
            self._start("vscode.response-state", rid)
            self._push("error", done, "error", message=reason)
        return min(first, ts)

    def _block(
        self, block: Any, rid: str, j: int, ts: int | float, done: int | float, model: str | None
    ) -> None:
        item = _record(block)
        kind = _string(item.get("kind") if item is not None else None)
        where = f"{rid}:response:{j}"
        text = None if kind else _text(block)
        if text:
            self._resume(rid, j)
            self._push("agent_text", ts, "text", content=text, model=model)
        elif kind == "thinking" and item is not None:
            thought = _text(item.get("value"))
            if thought:
                self._resume(rid, j)
                self._push("agent_thinking", ts, "thinking", content=thought)
        elif kind == "toolInvocationSerialized" and item is not None:
            call_id = _string(item.get("toolCallId")) or f"{where}:call"
            self._start("vscode.tool", call_id)
            self._after_tool = True
            self._tool(item, where, ts, done)
        elif kind == "textEditGroup" and item is not None:
            self._resume(rid, j)
            data: dict[str, Any] = {}
            uri = _path(item.get("uri"))
            if uri is not None:
                data["uri"] = uri
            for name in ("edits", "done"):
                if name in item:
                    data[name] = item[name]
            self._push("system_event", ts, "system_event", subtype="workspace.edit", data=data)
        elif kind == "warning" and item is not None:
            warning = _text(item.get("content")) or _text(item)
            if warning:
                self._resume(rid, j)
                self._push("error", ts, "error", message=warning)

    def _resume(self, rid: str, j: int) -> None:
        """Text after a tool invocation opens a new response message (`Y`)."""
        if self._after_tool:
            self._start("vscode.response", f"{rid}:{j}")
            self._after_tool = False

    def _tool(self, e: dict[str, Any], where: str, ts: int | float, done: int | float) -> None:
        """The CLI's `rmt`: a tool invocation's call, and its result once complete."""
        call_id = _string(e.get("toolCallId")) or f"{where}:call"
        name = _string(e.get("toolId")) or "unknown"
        said = _text(e.get("invocationMessage"))
        details = _record(e.get("toolSpecificData"))
        args: dict[str, Any] = {}
        if said:
            args["description"] = said
        invocation = _record(e.get("invocationMessage"))
        uris = _record(invocation.get("uris")) if invocation is not None else None
        if uris is not None:
            paths = [p for p in (_path(v) for v in _js.object_values(uris)) if p]
            if paths:
                args["paths"] = paths
        if details is not None and details.get("kind") == "terminal":
            line = _record(details.get("commandLine"))
            confirmation = _record(details.get("confirmation"))
            command = _first(
                line.get("original") if line else None,
                line.get("forDisplay") if line else None,
                confirmation.get("commandLine") if confirmation else None,
            )
            cwd = _path(details.get("cwd"))
            if command:
                args["command"] = command
            if cwd:
                args["cwd"] = cwd
            if isinstance(details.get("language"), str):
                args["language"] = details["language"]
            if isinstance(details.get("isBackground"), bool):
                args["isBackground"] = details["isBackground"]
        elif (
            details is not None
            and details.get("kind") == "todoList"
            and isinstance(details.get("todoList"), list)
        ):
            args["todos"] = details["todoList"]
        elif details is not None:
            args["details"] = details
        self._push(
            "tool_call", ts, "tool_call", call_id, call_id=call_id, tool_name=name, args=args
        )
        if e.get("isComplete") is not True:
            return
        terminal = _record(details.get("terminalCommandState")) if details else None
        code = terminal.get("exitCode") if terminal else None
        ok = not _js.is_number(code) or code == 0
        end = _time(terminal.get("timestamp") if terminal else None, done)
        took = terminal.get("duration") if terminal else None
        timing: dict[str, Any] = {}
        if _js.is_number(took) and took >= 0:
            timing = {"started_at": max(0, end - took), "completed_at": end, "duration_ms": took}
        self._push(
            "tool_result", end, "tool_result", call_id,
            call_id=call_id, tool_name=name, output=_output(e, details),
            status="success" if ok else "error", **timing,
        )  # fmt: skip

    def _start(self, message_type: str, native: str) -> None:
        """`startMessage`: a new message key, and part keys counted afresh."""
        self._message_key = self._messages(message_type, native)
        self._parts = Counter()

    def _push(
        self, kind: Kind, ts: int | float, part_type: str, part_native: str | None = None,
        **fields: Any,
    ) -> None:  # fmt: skip
        self._events.append(
            Event(
                kind=kind,
                order=self._order,
                timestamp=_js.plain(ts),
                message_key=self._message_key,
                part_key=self._parts(part_type, part_native),
                **fields,
            )
        )
        self._order += 1


def _output(e: dict[str, Any], details: dict[str, Any] | None) -> str:
    """The CLI's `nmt`: the terminal's output, else the result details, else a summary."""
    terminal = _record(details.get("terminalCommandOutput")) if details else None
    text = _string(terminal.get("text") if terminal else None)
    if text:
        return _js.trim(_ANSI.sub("", text))
    if "resultDetails" in e:
        found = e["resultDetails"]
        shown = (
            "" if found is None else found if isinstance(found, str) else _js.stringify(found, 2)
        )
        if shown and shown != "[]":
            return shown
    return (
        _text(e.get("pastTenseMessage"))
        or _string(e.get("generatedTitle"))
        or ("(completed)" if e.get("isComplete") is True else "(no output)")
    )


def _model(d: dict[str, Any], response: list[Any]) -> str | None:
    """The CLI's `amt`: an auto mode's resolved model, else the request's model id."""
    for block in response:
        item = _record(block)
        if item is None or item.get("kind") != "autoModeResolution":
            continue
        found = _first(item.get("resolvedModel"), item.get("resolvedModelName"))
        if found:
            return found
    return _string(d.get("modelId"))


def _record(value: Any) -> dict[str, Any] | None:
    """The CLI's `Ma`."""
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _string(value: Any) -> str | None:
    """`ja([value])`: a string with something besides whitespace, trimmed."""
    if not isinstance(value, str):
        return None
    return _js.trim(value) or None


def _first(*values: Any) -> str | None:
    """`ja([...])`."""
    for value in values:
        found = _string(value)
        if found:
            return found
    return None


def _text(value: Any) -> str | None:
    """The CLI's `LA`: a string, or an object's value/text/message/content."""
    if isinstance(value, str):
        return _string(value)
    item = _record(value)
    if item is None:
        return None
    return _first(item.get("value"), item.get("text"), item.get("message"), item.get("content"))


def _path(value: Any) -> str | None:
    """The CLI's `_F`: a URI's file path."""
    if isinstance(value, str):
        return _file(value)
    item = _record(value)
    if item is None:
        return None
    return _first(item.get("fsPath"), item.get("path"), item.get("external"))


def _file(uri: str) -> str | None:
    """The CLI's `lF`: a `file:` URL's decoded path, any other text as it is."""
    if not uri:
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.scheme.lower() == "file":
        return unquote(parts.path or "/")
    return uri


def _time(value: Any, fallback: int | float) -> int | float:
    """The CLI's `Cf`: ms (or seconds, below 1e12) as a number or a string, else a date."""
    if _js.is_finite(value):
        return value * 1000 if value < 1_000_000_000_000 else value
    if isinstance(value, str):
        number = _js.to_number(value)
        if math.isfinite(number):
            whole = _js.plain(number)
            return whole * 1000 if whole < 1_000_000_000_000 else whole
        parsed = _js.date_parse(value)
        if parsed is not None:
            return parsed
    return fallback
