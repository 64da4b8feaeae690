"""What Cline's messages say: the text of classic UI messages (`ui_messages.json`) and of
SDK (Anthropic-style) messages, with Cline's `<environment_details>` and `<task>` envelopes
removed, and the complete objects in a window of a JSON array too large to parse whole."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from tracesd.capture.adapters._docs import Document, decode_at
from tracesd.capture.adapters._files import SessionFile
from tracesd.capture.adapters._text import text_of, to_ms


class Chat(NamedTuple):  # an SDK messages file
    first_user: str | None
    last_text: str | None
    updated: int | None


_SAY_TEXT = frozenset({"task", "text", "completion_result", "user_feedback"})
#: asks worth a preview -> the member of their JSON text that holds it
_ASK_TEXT = {"completion_result": "", "followup": "question", "plan_mode_respond": "response"}
_ENVELOPE = re.compile(r"<environment_details>.*?(</environment_details>|$)", re.DOTALL)
_TASK = re.compile(r"^\s*<task>\s*(.*?)\s*</task>\s*$", re.DOTALL)


def read_messages(path: str) -> Chat:
    """An SDK `<id>.messages.json`: its first user prompt, its last text, when it changed
    (a file too large to parse whole is read from its head and its tail)."""
    with SessionFile(path) as f:
        doc = Document(f)
    if doc.partial:
        head = doc.leading_items("messages")
        tail = [o for o in objects(doc.tail, "id") if "role" in o]
        updated = to_ms(doc.member("updated_at"))
    else:
        whole = doc.require(dict)
        listed = whole.get("messages")
        head = tail = listed if isinstance(listed, list) else []
        updated = to_ms(whole.get("updated_at"))
    first = next((t for m in head if (t := message_text(m, "user"))), None)
    last = next((t for m in reversed(tail) if (t := message_text(m))), None)
    return Chat(first, last, updated)


def message_text(message: Any, role: str | None = None) -> str | None:
    """The text of an SDK (Anthropic-style) message, envelopes removed."""
    roles = (role,) if role else ("user", "assistant")
    if not isinstance(message, dict) or message.get("role") not in roles:
        return None
    text = text_of(message.get("content"))
    if not text:
        return None
    text = _ENVELOPE.sub("", text)
    unwrapped = _TASK.match(text)
    text = (unwrapped.group(1) if unwrapped else text).strip()
    return text or None


def ui_text(message: dict[str, Any]) -> str | None:
    """Readable text of a classic UI message: said text, a question or a plan reply."""
    text, ask = message.get("text"), message.get("ask")
    if message.get("partial") is True or not isinstance(text, str) or not text.strip():
        return None
    if message.get("type") == "say":
        return text if message.get("say") in _SAY_TEXT else None
    key = _ASK_TEXT.get(ask) if message.get("type") == "ask" and isinstance(ask, str) else None
    if key is None:
        return None
    if not key or not text.lstrip().startswith("{"):
        return text  # older versions asked in plain text
    value = loads(text)
    inner = value.get(key) if isinstance(value, dict) else None
    return inner if isinstance(inner, str) and inner.strip() else None


def objects(text: str, first_key: str) -> list[dict[str, Any]]:
    """The complete objects in a window of a large array whose items begin with `first_key`
    (how Cline serialises messages and history items), in order."""
    pattern = re.compile(r"\{\s*" + re.escape(json.dumps(first_key)) + r"\s*:")
    found: list[dict[str, Any]] = []
    end = 0
    for match in pattern.finditer(text):
        if match.start() < end:
            continue  # inside the object just decoded
        decoded = decode_at(text, match.start())
        if decoded is not None and isinstance(decoded[0], dict):
            found.append(decoded[0])
            end = decoded[1]
    return found


def loads(text: str) -> Any:
    """JSON, or None for anything that is not (nested beyond recursion included)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
