"""Small text and time helpers shared by the adapters, and the TraceMeta they make."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tracesd.models import PREVIEW_MAX, TITLE_MAX, GitInfo, TraceMeta

#: year 10000; anything later is not a timestamp (and would not fit SQLite's INTEGER)
_MAX_MS = 253_402_300_800_000
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def one_line(text: str | None, limit: int) -> str | None:
    """Whitespace collapsed to single spaces, control characters dropped, at most `limit`."""
    if not text:
        return None
    # Only the start can show: a 100 KB tool output is not cleaned up whole to keep 500.
    text = text[: max(8 * limit, 4096)]
    flat = " ".join(_CONTROL.sub("", text).split())
    if not flat:
        return None
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def title(text: str | None) -> str | None:
    return one_line(text, TITLE_MAX)


def preview(text: str | None) -> str | None:
    return one_line(text, PREVIEW_MAX)


def to_ms(value: Any) -> int | None:
    """ISO-8601 (with or without zone; naive = UTC) or epoch seconds/ms, as ms since epoch."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value != value:  # NaN
            return None
        # 1e11 ms is 1973; anything smaller is a timestamp in seconds
        ms = value if value > 1e11 else value * 1000
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = parsed.timestamp() * 1000
    else:
        return None
    return int(ms) if 0 <= ms < _MAX_MS else None


def latest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def text_of(content: Any, *, block_types: tuple[str, ...] = ("text",)) -> str | None:
    """The text of a message content: a string, or a list of blocks whose text is joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and isinstance(block.get("text"), str)
            and block.get("type", "text") in block_types
        ]
        return "\n".join(parts) if parts else None
    return None


def session_meta(
    agent_id: str,
    trace_id: str,
    source_path: str,
    directory: object,
    *,
    prompt: str | None,
    last_text: str | None,
    created: int | None,
    last_activity: int | None,
    agent_git: GitInfo | None = None,
    model: str | None = None,
) -> TraceMeta:
    """A session's TraceMeta from what its files say: the first prompt is the title, the
    latest message (else the prompt) the preview, and activity is never before the start.
    A directory that is not a non-empty string (a malformed field) is unknown."""
    return TraceMeta(
        agent_id=agent_id,
        trace_id=trace_id,
        source_path=source_path,
        directory=directory if isinstance(directory, str) and directory else None,
        title=title(prompt),
        preview=preview(last_text or prompt),
        timestamp=latest(last_activity, created),
        created=created,
        agent_git=agent_git,
        model=model if isinstance(model, str) and model.strip() else None,
    )
