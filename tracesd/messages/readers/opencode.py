"""OpenCode's messages, read as the real CLI reads them (its `opencode` adapter).

A session is read whole, from `<data>/opencode.db` (tables `session`, `message`, `part`)
unless the trace's source is a legacy `storage/session/<project>/<id>.json` that still
exists (then its `storage/message/<id>/*.json` and `storage/part/<message>/*.json` files),
and skipped while its files are unchanged.

Per message (by time, then id), per part: a text part is a user message or assistant text,
a reasoning part a thought, a tool part a call and (completed or error) its result, a file
part with text a message, a compaction part a system event; synthetic parts are skipped.
A message without events but with an error is one error event. Message key
`<role>:<message id>`, part keys `<type>:<part id>` (tool parts: the call id). Token usage: a
step's `step-finish` tokens go to the step's last assistant event, else the message's
tokens to its last one. Assistant summary messages are not read; their text goes into the
compaction part of the message they summarise.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from tracesd.capture.adapters import _sqlite
from tracesd.errors import ParseError
from tracesd.messages import keys
from tracesd.messages.event import Event, Kind, usage
from tracesd.messages.readers import Position, Read, Unreadable, _document, _js, _tokens
from tracesd.models import Trace

STORE = "opencode.db"
_TOKEN_COLUMNS = (
    "tokens_input",
    "tokens_output",
    "tokens_reasoning",
    "tokens_cache_read",
    "tokens_cache_write",
)
_USAGE_KINDS = frozenset({"agent_text", "agent_thinking", "tool_call", "error"})
_DIGITS = re.compile(r"(\d+)")


class OpenCodeReader:
    def read(self, trace: Trace, position: Position) -> Read:
        source = trace.source_path or ""
        data_dir = _data_dir(source)
        store = os.path.join(data_dir, STORE)
        legacy = source.endswith(".json") and os.path.exists(source)
        use_store = os.path.isfile(store) and not legacy
        fingerprint = _store_print(store) if use_store else _legacy_print(source, trace.id)
        if position.state.get("fingerprint") == fingerprint:
            return Read([], position)
        try:
            if use_store:
                with _sqlite.connect(store) as conn:
                    events = _from_store(conn, trace.id)
                if events is None:
                    raise Unreadable(f"no OpenCode session {trace.id} in {store}")
            else:
                events = _from_files(source, os.path.join(data_dir, "storage"))
        except ParseError as error:
            raise Unreadable(f"{source}: {error}") from error
        except OSError as error:
            raise Unreadable(f"{source}: {error.strerror or error}") from error
        digest = hashlib.sha256(repr(events).encode()).hexdigest()
        after = Position(0, {"fingerprint": fingerprint, "digest": digest})
        if position.state.get("digest") == digest:
            return Read([], after)
        return Read(events, after, whole=True)


def _data_dir(source: str) -> str:
    if source.endswith(".json"):  # <data>/storage/session/<project>/<id>.json
        return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(source))))
    return os.path.dirname(_sqlite.database_of(source))


def _store_print(store: str) -> str:
    return _document.stamp(*(store + s for s in ("", "-wal", "-shm", "-journal")))


def _legacy_print(source: str, session: str) -> str:
    storage = os.path.join(_data_dir(source), "storage")
    seen = [_document.stamp(source)]
    messages = os.path.join(storage, "message", session)
    for name in _listing(messages):
        seen.append(f"{name}={_document.stamp(os.path.join(messages, name))}")
        parts = os.path.join(storage, "part", name.removesuffix(".json"))
        seen += [f"{p}={_document.stamp(os.path.join(parts, p))}" for p in _listing(parts)]
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()


def _listing(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError:
        return []


# -- the store ----------------------------------------------------------------------------


def _from_store(conn: sqlite3.Connection, session: str) -> list[Event] | None:
    columns = _sqlite.columns(conn, "session")
    if "id" not in columns:
        return None
    if conn.execute("SELECT 1 FROM session WHERE id = ?", (session,)).fetchone() is None:
        return None
    messages = conn.execute(
        "SELECT id, session_id, time_created, data FROM message WHERE session_id = ?"
        " ORDER BY time_created ASC, id ASC",
        (session,),
    ).fetchall()
    rows = conn.execute(
        "SELECT id, message_id, session_id, time_created, data FROM part WHERE session_id = ?"
        " ORDER BY message_id ASC, time_created ASC, id ASC",
        (session,),
    ).fetchall()
    parts: dict[Any, list[dict[str, Any]]] = {}
    for part_id, message_id, _, created, data in rows:
        part = _json_field(data)
        if isinstance(part, dict) and isinstance(part.get("type"), str):
            part = {**part, "id": part_id, "messageID": message_id, "timeCreated": created}
            parts.setdefault(message_id, []).append(part)
    read = [m for row in messages if (m := _store_message(row)) is not None]
    summaries: dict[Any, dict[str, Any]] = {}
    for message in read:
        if message["role"] == "assistant" and message.get("summary") is True:
            parent = message.get("parentID")
            if parent:
                texts = (p.get("text") for p in parts.get(message["id"], []) if p["type"] == "text")
                summaries[parent] = {
                    "text": next((t for t in texts if t), None),
                    "modelId": message.get("modelID"),
                    "costUsd": message.get("cost"),
                }
    events: list[Event] = []
    counter = keys.Counter()
    for message in read:
        if message["role"] == "assistant" and message.get("summary") is True:
            continue
        summary = summaries.get(message["id"])
        events += _events(message, parts.get(message["id"], []), len(events) + 1, counter, summary)
    return events


def _store_message(row: tuple[Any, ...]) -> dict[str, Any] | None:
    message_id, session_id, created, data = row
    message = _json_field(data)
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        return None
    time = _dict(message.get("time"))
    start = time.get("created") if _js.is_number(time.get("created")) else created
    end = time.get("completed")
    times = {"created": start, **({"completed": end} if _js.is_number(end) else {})}
    return {**message, "id": message_id, "sessionID": session_id, "time": times}


def _json_field(value: Any) -> Any:
    text = _sqlite.text(value)
    if text is None:
        return None
    try:
        return _js.parse_json(text)
    except (ValueError, RecursionError):
        return None


# -- legacy files -------------------------------------------------------------------------


def _from_files(source: str, storage: str) -> list[Event]:
    with open(source, encoding="utf-8", errors="replace") as handle:
        session = _js.parse_json(handle.read())
    folder = os.path.join(storage, "message", str(session["id"]))
    messages = [m for m in (_file(folder, n) for n in _all_json(folder)) if m is not None]
    messages.sort(key=functools.cmp_to_key(_by_time))
    events: list[Event] = []
    counter = keys.Counter()
    for message in messages:
        parts_dir = os.path.join(storage, "part", str(message.get("id")))
        names = sorted(_all_json(parts_dir), key=functools.cmp_to_key(_by_number))
        parts = [p for p in (_file(parts_dir, n) for n in names) if p is not None]
        events += _events(message, parts, len(events) + 1, counter, None)
    return events


def _all_json(folder: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".json")]
    except OSError:
        return []


def _file(folder: str, name: str) -> Any:
    try:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
            return _js.parse_json(handle.read())
    except (OSError, ValueError, RecursionError):
        return None


def _by_time(a: dict[str, Any], b: dict[str, Any]) -> int:
    at, bt = _created(a), _created(b)
    if at != bt:
        return -1 if at < bt else 1
    return _locale_compare(str(a.get("id")), str(b.get("id")))


def _created(message: dict[str, Any]) -> float:
    value: Any = _dict(message.get("time")).get("created")
    return float(value) if _js.is_number(value) else 0.0


def _by_number(a: str, b: str) -> int:
    """The CLI's part file order: by the first run of digits in the name, then the name."""
    an, bn = (int(m.group(1)) if (m := _DIGITS.search(x)) else 0 for x in (a, b))
    if an != bn:
        return -1 if an < bn else 1
    return _locale_compare(a, b)


def _locale_compare(a: str, b: str) -> int:
    """An approximation of `localeCompare` (ICU's root collation): case only breaks ties,
    lower case first; punctuation before digits before letters."""
    ka, kb = _collation(a), _collation(b)
    return (ka > kb) - (ka < kb)


def _collation(text: str) -> tuple[list[tuple[int, str]], list[bool]]:
    primary = [(0 if not c.isalnum() else 1 if c.isdigit() else 2, c.lower()) for c in text]
    return primary, [c.isupper() for c in text]


# -- a message's events (the CLI's `convertToEvents`) ------------------------------------------


def _events(
    message: dict[str, Any],
    parts: list[dict[str, Any]],
    order: int,
    counter: Callable[..., str],
    summary: dict[str, Any] | None,
) -> list[Event]:
    time = message.get("time")
    if not isinstance(time, dict):
        raise ParseError("malformed", "an OpenCode message without a time")
    created = time.get("created")
    user = message.get("role") == "user"
    timing = _span(created, time.get("completed"))
    message_key = counter(_js_key(message.get("role")), _native(message.get("id")))
    part = keys.Counter()
    out: list[Event] = []

    def add(kind: Kind, part_type: str, native: Any, at: Any, **fields: Any) -> None:
        nonlocal order
        out.append(
            Event(
                kind=kind,
                order=order,
                timestamp=at if _js.is_number(at) else None,
                message_key=message_key,
                part_key=part(part_type, _native(native)),
                **fields,
            )
        )
        order += 1

    step_start, attached = 0, False
    for p in parts:
        if p.get("synthetic"):
            continue
        kind, text = p.get("type"), p.get("text")
        if kind in ("text", "file") and text:
            if user:
                add("user_message", kind, p.get("id"), created, content=text)
            else:
                model = message.get("modelID") if kind == "text" else None
                add("agent_text", kind, p.get("id"), created, content=text, model=model, **timing)
        elif kind == "reasoning" and text:
            ptime = _dict(p.get("time"))
            own = _span(ptime.get("start"), ptime.get("end"))
            at = ptime.get("start") or created
            add("agent_thinking", "reasoning", p.get("id"), at, content=text, **(own or timing))
        elif kind == "tool" and p.get("tool") and p.get("state"):
            state = _dict(p["state"])
            stime = _dict(state.get("time"))
            call_id = p.get("callID") or p.get("id")
            name, args = _tool(p["tool"], state)
            start = stime.get("start")
            add(
                "tool_call",
                "tool_call",
                call_id,
                start or created,
                call_id=call_id,
                tool_name=name,
                args=args,
                started_at=start if _js.is_number(start) else None,
            )
            if state.get("status") in ("completed", "error"):
                add(
                    "tool_result",
                    "tool_result",
                    call_id,
                    stime.get("end") or created,
                    call_id=call_id,
                    tool_name=name,
                    output=state.get("output") or "(empty result)",
                    status="success" if state["status"] == "completed" else "error",
                    **_span(start, stime.get("end")),
                )
        elif kind == "compaction":
            data: dict[str, Any] = {}
            if isinstance(p.get("auto"), bool):
                data["trigger"] = "auto" if p["auto"] else "manual"
            if p.get("tail_start_id"):
                data["retainedFromId"] = p["tail_start_id"]
            if summary and summary.get("text"):
                data["summary"] = summary["text"]
            if summary and summary.get("modelId"):
                data["modelId"] = summary["modelId"]
            if summary and _js.is_number(summary.get("costUsd")):
                data["costUsd"] = summary["costUsd"]
            at = p.get("timeCreated")
            add(
                "system_event",
                "system_event",
                p.get("id"),
                created if at is None else at,
                subtype="compaction",
                data=data,
            )
        elif kind == "step-finish":
            if not user and (tokens := _usage(p.get("tokens"))):
                attached = _tokens.attach(out, step_start, tokens, _USAGE_KINDS) or attached
            step_start = len(out)
    error = message.get("error")
    if not out and isinstance(error, dict) and error:
        text = error.get("message") or "(no error message)"
        add("error", "error", None, created, message=text)
    if not user and not attached and (tokens := _usage(message.get("tokens"))):
        _tokens.attach(out, 0, tokens, _USAGE_KINDS)
    return out


def _span(start: Any, end: Any) -> dict[str, Any]:
    """The CLI's `An`: started, and completed with its duration when the end is known."""
    if not _js.is_finite(start):
        return {}
    if not _js.is_finite(end) or end < start:
        return {"started_at": start}
    return {"started_at": start, "completed_at": end, "duration_ms": end - start}


def _tool(tool: Any, state: dict[str, Any]) -> tuple[Any, Any]:
    if tool != "skill":
        return tool, state.get("input") or {}
    given = _dict(state.get("input"))
    meta = _dict(state.get("metadata"))
    args: dict[str, Any] = {"sourceFormat": "opencode-native"}
    name, folder = given.get("name"), meta.get("dir")
    if isinstance(name, str) and _js.trim(name):
        args["name"] = _js.trim(name)
    if isinstance(folder, str) and _js.trim(folder):
        args["path"] = _js.trim(folder)
    return "skill", args


def _usage(tokens: Any) -> dict[str, Any] | None:
    """The CLI's `mapOpenCodeTokenUsage`: counts floored, anything else left out."""
    if not tokens or not isinstance(tokens, dict):
        return None
    cache = _dict(tokens.get("cache"))
    return usage(
        {
            "inputTokenCount": _tokens.count(tokens.get("input")),
            "outputTokenCount": _tokens.count(tokens.get("output")),
            "cacheReadTokenCount": _tokens.count(cache.get("read")),
            "cacheWriteTokenCount": _tokens.count(cache.get("write")),
            "reasoningTokenCount": _tokens.count(tokens.get("reasoning")),
        }
    )


def _dict(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (whose fields read as `undefined`)."""
    return value if isinstance(value, dict) else {}


def _native(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else json.dumps(value)


def _js_key(value: Any) -> str:
    return "undefined" if value is None else _js.string(value)
