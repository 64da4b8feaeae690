"""A composer in Cursor's global store (`globalStorage/state.vscdb`), read into events as the
CLI does (its cursor adapter's `getGlobalStorageTraceContent`): re-read whole (one composer
row and its `bubbleId:<id>:<bubble>` rows), skipped while the store's files are unchanged.

Per header in order, from its bubble (a missing bubble is skipped): a user bubble (type 1)
is one user message; an assistant bubble (type 2) its thinking blocks, then (its
`thinking.text`), then a tool call and its result (`toolFormerData`) or else its text, then
its error. Message key `user|assistant:<bubble id>`, part keys counted per bubble (`text:0`,
`thinking:1`, ...); a compaction summary adds a system event after the bubble it compacts
through.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from typing import Any

from tracesd.capture.adapters import _sqlite
from tracesd.errors import ParseError
from tracesd.messages import keys
from tracesd.messages.event import Event
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js

_EDIT_CONTENT = "composer.content."
_EDIT_LIMIT = 100_000
_OUTPUT_LIMIT = 5000


class _Stop(Exception):
    """What throws in the CLI's read (a value of an unexpected type): it keeps the events so
    far and stops."""


def listed_composer(database: str, composer: str) -> dict[str, Any] | None:
    """The composer, when the CLI lists it as a global-store session."""
    if not os.path.isfile(database):
        return None
    with _sqlite.connect(database) as conn:
        value = _value(conn, "composerData:" + composer)
    if value is None or len(value) <= 10:
        return None
    try:
        parsed = _js.parse_json(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    headers = parsed.get("fullConversationHeadersOnly")
    if not headers or (isinstance(headers, list | str) and len(headers) == 0):
        return None
    return parsed


def _value(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM cursorDiskKV WHERE key = ?", (key,)).fetchone()
    return _sqlite.text(row[0]) if row else None


def read(database: str, composer: str, position: Position) -> Read:
    """The composer's events, whole; none while the store's files are unchanged or its events
    the same as at `position`."""
    fingerprint = _document.stamp(database, database + "-wal")
    state = position.state
    if state.get("source") == "global" and state.get("fingerprint") == fingerprint:
        return Read([], position)
    try:
        with _sqlite.connect(database) as conn:
            events = _Global(conn, composer).events()
    except ParseError as error:
        raise Unreadable(f"{database}: {error}") from error
    digest = hashlib.sha256(
        json.dumps([e.signature() for e in events] + [repr(e) for e in events]).encode()
    ).hexdigest()
    after = Position(0, {"source": "global", "fingerprint": fingerprint, "digest": digest})
    if state.get("source") == "global" and state.get("digest") == digest:
        return Read([], after)
    return Read(events, after, whole=True)


class _Global:
    """One composer of the global store, read as the CLI's `getGlobalStorageTraceContent`."""

    def __init__(self, conn: sqlite3.Connection, composer: str) -> None:
        self.conn, self.id = conn, composer
        self.out: list[Event] = []
        self.order = 1

    def events(self) -> list[Event]:
        with contextlib.suppress(_Stop):  # the CLI logs it and uploads what it read before
            self._read()
        return self.out

    def _read(self) -> None:
        raw = _value(self.conn, "composerData:" + self.id)
        data = _parsed(raw) if raw is not None else None
        if not isinstance(data, dict):
            raise _Stop
        created = data.get("createdAt")
        updated = data.get("lastUpdatedAt")
        # the trace's own time (the CLI's `lastUpdatedAt || createdAt`)
        fallback = updated or created
        summary = _compaction(data)
        model_config = data.get("modelConfig")
        model = model_config.get("modelName") if isinstance(model_config, dict) else None
        model = model if isinstance(model, str) and model else None
        headers = data.get("fullConversationHeadersOnly") or []
        if not isinstance(headers, list):
            raise _Stop
        bubbles = 0
        for index, header in enumerate(headers):
            if not isinstance(header, dict):
                raise _Stop
            bubble_id = header.get("bubbleId")
            bubble = self._bubble(bubble_id)
            if not bubble:
                continue
            if not isinstance(bubble, dict):
                bubble = {}
            if bubble_id is not None and not isinstance(bubble_id, str):
                raise _Stop
            # None: JavaScript's NaN, which its JSON sends as null
            at: float | None = (
                _js.date_time(bubble["createdAt"]) if bubble.get("createdAt") else _number(fallback)
            )
            role = "user" if bubble.get("type") == 1 else "assistant"
            message_key = keys.key(role, bubble_id, bubbles)
            bubbles += 1
            self._bubble_events(bubble, message_key, at, model)
            if summary is not None and summary["compactedThroughId"] in (
                bubble.get("serverBubbleId"),
                bubble_id,
            ):
                self._compaction(summary, index, bubble, updated, fallback)

    def _bubble(self, bubble_id: Any) -> Any:
        raw = _value(self.conn, f"bubbleId:{self.id}:{_js_text(bubble_id)}")
        return _parsed(raw) if raw is not None else None

    def _bubble_events(
        self, bubble: dict[str, Any], message_key: str, at: float | None, model: str | None
    ) -> None:
        part = keys.Counter()
        duration = bubble.get("turnDurationMs")
        timing: dict[str, Any] = {}
        if at is not None and duration is not None and _js.is_finite(duration) and duration >= 0:
            timing = {
                "started_at": _js.plain(max(0, at - duration)),
                "completed_at": _js.plain(at),
                "duration_ms": duration,
            }

        def add(kind: Any, part_type: str, **fields: Any) -> None:
            self.out.append(
                Event(
                    kind=kind,
                    order=self.order,
                    timestamp=None if at is None else _js.plain(at),
                    message_key=message_key,
                    part_key=part(part_type),
                    **fields,
                )
            )
            self.order += 1

        kind = bubble.get("type")
        if kind == 1:
            text = bubble.get("text")
            if isinstance(text, str) and text:
                add("user_message", "text", content=text)
            return
        if kind != 2:
            return
        blocks = bubble.get("allThinkingBlocks")
        if blocks and not isinstance(blocks, str):
            if not isinstance(blocks, list):
                raise _Stop
            for block in blocks:
                if not isinstance(block, dict):
                    raise _Stop
                thinking = block.get("thinking")
                if isinstance(thinking, str) and thinking:
                    add("agent_thinking", "thinking", content=thinking, **timing)
        thought = bubble.get("thinking")
        text = thought.get("text") if isinstance(thought, dict) else None
        if isinstance(text, str) and text:
            spent = bubble.get("thinkingDurationMs")
            add(
                "agent_thinking",
                "thinking",
                content=text,
                duration_ms=spent if _js.is_number(spent) else None,
            )
        tool = bubble.get("toolFormerData")
        if tool:
            if not isinstance(tool, dict):
                raise _Stop
            name = tool.get("name")
            name = name if isinstance(name, str) and name else "unknown_tool"
            call_id = f"call-{self.order}"
            params = tool.get("params")
            if params:
                args = _params(params)
                if name == "edit_file_v2" and tool.get("result"):
                    args = self._edit_args(args, tool["result"])
                add("tool_call", "tool_use", call_id=call_id, tool_name=name, args=args, **timing)
            output = _tool_result(name, tool)
            if output:
                add(
                    "tool_result",
                    "tool_result",
                    call_id=call_id,
                    tool_name=name,
                    output=_js.truncate(output, _OUTPUT_LIMIT),
                    status="error" if tool.get("status") == "error" else "success",
                    **timing,
                )
        else:
            text = bubble.get("text")
            if isinstance(text, str) and text:
                add("agent_text", "text", content=text, model=model, **timing)
        details = bubble.get("errorDetails")
        message = details.get("message") if isinstance(details, dict) else None
        if message:
            title = details.get("title") if isinstance(details, dict) else None
            shown = f"{_js_text(title)}: {_js_text(message)}" if title else _js_text(message)
            add("error", "error", message=shown, **timing)

    def _edit_args(self, args: Any, result: Any) -> Any:
        """The CLI's `enrichEditFileV2Args`: the file's text before and after the edit."""
        try:
            parsed = _js.parse_json(result) if isinstance(result, str) else None
        except (ValueError, RecursionError):
            return args
        if not isinstance(parsed, dict):
            return args
        before = self._edit_content(parsed.get("beforeContentId"))
        after = self._edit_content(parsed.get("afterContentId"))
        if before is None or after is None:
            return args
        spread = dict(args) if isinstance(args, dict) else {}
        path = spread.get("path")
        if not isinstance(path, str):
            relative = spread.get("relativeWorkspacePath")
            path = relative if isinstance(relative, str) else path
        if path is not None or "path" in spread:
            spread["path"] = path
        spread["old_string"] = _js.truncate(before, _EDIT_LIMIT)
        spread["new_string"] = _js.truncate(after, _EDIT_LIMIT)
        return spread

    def _edit_content(self, content_id: Any) -> str | None:
        if not isinstance(content_id, str) or not content_id:
            return None
        key = content_id if content_id.startswith(_EDIT_CONTENT) else _EDIT_CONTENT + content_id
        return _value(self.conn, key)

    def _compaction(
        self,
        summary: dict[str, Any],
        index: int,
        bubble: dict[str, Any],
        updated: Any,
        fallback: Any,
    ) -> None:
        data: dict[str, Any] = {
            "compactedThroughId": summary["compactedThroughId"],
            "compactedMessageCount": index + 1,
        }
        for name in ("summary", "retainedFromId", "previousCompactionId", "boundaryMessageId"):
            if summary.get(name):
                data[name] = summary[name]
        if isinstance(summary.get("summaryIncludesToolResults"), bool):
            data["summaryIncludesToolResults"] = summary["summaryIncludesToolResults"]
        created = bubble.get("createdAt")
        parsed = _js.date_parse(created) if isinstance(created, str) and created else None
        at = parsed if parsed is not None else _number(updated if updated is not None else fallback)
        key = keys.key("system_event", summary["compactedThroughId"])
        self.out.append(
            Event(
                kind="system_event",
                order=self.order,
                timestamp=None if at is None else _js.plain(at),
                message_key=key,
                part_key=key,
                subtype="compaction",
                data=data,
            )
        )
        self.order += 1


def _compaction(data: dict[str, Any]) -> dict[str, Any] | None:
    """The CLI's `getCompactionSummary`."""
    latest = data.get("latestConversationSummary")
    summary = latest.get("summary") if isinstance(latest, dict) else None
    if not summary:
        return None
    if not isinstance(summary, dict):
        return None
    through = _trimmed(summary.get("truncationLastBubbleIdInclusive"))
    if not through:
        return None
    assert isinstance(latest, dict)
    return {
        "boundaryMessageId": _trimmed(latest.get("lastBubbleId")),
        "compactedThroughId": through,
        "previousCompactionId": _trimmed(summary.get("previousConversationSummaryBubbleId")),
        "retainedFromId": _trimmed(summary.get("clientShouldStartSendingFromInclusiveBubbleId")),
        "summary": _trimmed(summary.get("summary")),
        "summaryIncludesToolResults": summary.get("includesToolResults"),
    }


def _trimmed(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Stop  # `.trim()` of something else throws
    return _js.trim(value) or None


def _params(params: Any) -> Any:
    """`JSON.parse(params)`, else `{raw: params}`."""
    if _js.is_number(params) or isinstance(params, bool):
        return params
    if isinstance(params, str):
        try:
            return _js.parse_json(params)
        except (ValueError, RecursionError):
            pass
    return {"raw": params}


def _tool_result(name: str, tool: dict[str, Any]) -> str | None:
    """The CLI's `formatToolFormerResult`."""
    result = tool.get("result")
    if isinstance(result, str) and result:
        try:
            return _js.stringify(_js.parse_json(result), 2)
        except (ValueError, RecursionError):
            return result
    return _grep_summary(name, tool.get("additionalData"))


def _grep_summary(name: str, data: Any) -> str | None:
    """The CLI's `formatCursorGrepSummary`: a grep tool's counts and top files."""
    if not data or not isinstance(data, dict) or not _is_grep(name):
        return None
    top = data.get("topFiles")
    files = []
    if isinstance(top, list):
        for item in top:
            if not isinstance(item, dict):
                raise _Stop
            uri = item.get("uri")
            if isinstance(uri, str) and uri:
                files.append(item)
    matches, total = data.get("totalMatches"), data.get("totalFiles")
    if not _js.is_number(matches) and not _js.is_number(total) and not files:
        return None
    if not _js.is_number(matches):
        counts = [f.get("matchCount") for f in files]
        matches = sum(c for c in counts if isinstance(c, int | float) and not isinstance(c, bool))
    if not _js.is_number(total):
        total = len(files)
    pattern, path = _trimmed(data.get("pattern")), _trimmed(data.get("path"))
    listed = []
    for f in files:
        count = f.get("matchCount")
        listed.append(f"- {f['uri']}" + (f" ({_js_text(count)})" if _js.is_number(count) else ""))
    lines = [
        f"Matches: {_js_text(matches)}",
        f"Files: {_js_text(total)}",
        f"Pattern: {pattern}" if pattern else None,
        f"Path: {path}" if path else None,
        "Top files:\n" + "\n".join(listed) if listed else None,
    ]
    return "\n".join(line for line in lines if line)


def _is_grep(name: str) -> bool:
    folded = "".join(c for c in name.lower() if c not in "-_" and not c.isspace())
    return (
        "grep" in folded
        or "ripgrep" in folded
        or ("search" in folded and ("code" in folded or "raw" in folded))
    )


def _parsed(raw: str) -> Any:
    try:
        return _js.parse_json(raw)
    except (ValueError, RecursionError):
        return None


def _number(value: Any) -> float | None:
    return float(value) if _js.is_finite(value) else None


def _js_text(value: Any) -> str:
    """A value in a JavaScript template string."""
    if value is None:
        return "undefined"  # JSON null reads back as null only where the CLI says so
    return _js.string(value)
