"""The CLI's helpers for content blocks and tool parts that its Pi adapter and its Cursor
transcript reader each carry a copy of, word for word (`normalizeContentBlocks` and
`normalizeTranscriptBlocks`, `parseArgs` and `parseTranscriptArgs`, ...): ported once."""

from __future__ import annotations

from typing import Any

from tracesd.messages.readers import _js


def blocks(content: Any) -> list[dict[str, Any]]:
    """`normalizeContentBlocks`: a text is one text block; in a list, a text is a text
    block, an object a block, anything else passed over."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    out: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str):
            out.append({"type": "text", "text": item})
        elif isinstance(item, dict):
            out.append(item)
    return out


def args(value: Any) -> Any:
    """`parseArgs`: an object as it is, a text parsed as a JSON object (else `{raw}`),
    nothing as `{}`, anything else `{raw}`."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = _js.parse_json(value)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"raw": value}
    if value is None:
        return {}
    return {"raw": value}


def status(value: Any, is_error: Any = None) -> str:
    """`parseToolStatus`: `error` when the error flag is true or the status says it."""
    if is_error is True:
        return "error"
    word = (_js.pick_string(value) or "").lower()
    return "error" if word in ("error", "failed", "failure") else "success"


def output(value: Any) -> str:
    """`stringifyOutput`: a text as it is, nothing as empty, anything else as pretty JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _js.stringify(value, 2)
