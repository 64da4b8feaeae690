"""How the CLI turns Codex content and tool output into text (its codex adapter's
`extractTextFromContent`, `formatToolResult`, `stripCodexOutputMetadata`, `parseArguments`,
`parseCodexSkillInjection`), ported line for line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tracesd.messages.readers import _js

_METADATA_LINE = re.compile(
    r"^(?:Script completed|Script failed|Script terminated|Script running with cell ID\s+\S+"
    r"|Exit code:\s*.+|Wall time:?\s*.+|Chunk ID:\s*.+|Process exited with code\s*.+"
    r"|Process running with session ID\s*.+|Original token count:\s*.+"
    r"|Warning: truncated output.*|Total output lines:\s*.+)$"
)
_OUTPUT_LINE = re.compile(r"^Output:\s*$")
_SCRIPT_FAILED = re.compile(r"^Script (?:failed|terminated)$")
_EXIT = re.compile(r"^(?:Exit code:|Process exited with code)\s*(-?\d+)$")
_SKILL = re.compile(r"^<skill\b[^>]*>[\s\S]*</skill\s*>$", re.IGNORECASE)


@dataclass(frozen=True)
class Output:
    text: str
    status: str


@dataclass(frozen=True)
class Skill:
    name: str
    path: str | None
    raw: str


def text_of(content: Any) -> Any:
    """`extractTextFromContent`: a string, the joined texts of a list, or an object's text."""
    if not _js.truthy(content):
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [_block_text(block) for block in content]
        return _js.trim("\n".join(_js.string(t) for t in texts if _js.truthy(t)))
    if isinstance(content, dict) and "text" in content:
        text = content["text"]
        return "" if text is None else text
    return ""


def _block_text(block: Any) -> Any:
    if not _js.truthy(block):
        return ""
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and "text" in block:
        text = block["text"]
        return "" if text is None else text
    return ""


def summary_text(summary: Any) -> str:
    """`extractSummaryText`: the summary entries' texts, joined."""
    if not _js.truthy(summary) or not isinstance(summary, list) or not summary:
        return ""
    texts = [item.get("text") if isinstance(item, dict) else None for item in summary]
    return _js.trim("\n".join(_js.string(t) for t in texts if t is not None and _js.truthy(t)))


def arguments(value: Any) -> Any:
    """`parseArguments`: a JSON string parsed (else `{raw}`), any other value as it is."""
    if not _js.truthy(value):
        return {}
    if isinstance(value, str):
        try:
            return _js.parse_json(value)
        except ValueError:
            return {"raw": value}
    return value


def tool_result(output: Any) -> Output:
    """`formatToolResult`."""
    if output is None:
        return Output("", "success")
    if isinstance(output, str):
        trimmed = _js.trim(output)
        if not trimmed.startswith(("{", "[")):
            return strip_metadata(output)
        try:
            return _parsed(_js.parse_json(trimmed))
        except ValueError:
            return strip_metadata(output)
    if isinstance(output, dict | list):
        return _parsed(output)
    return strip_metadata(_js.string(output))


def _parsed(value: Any) -> Output:
    text = text_of(value)
    if _js.truthy(text):
        return strip_metadata(_js.string(text))
    if isinstance(value, dict) and "output" in value:
        inner = value["output"]
        if inner is None:
            return Output(_js.stringify(value, 2), "success")
        if isinstance(inner, str):
            return tool_result(inner)
        text = text_of(inner)
        if _js.truthy(text):
            return strip_metadata(_js.string(text))
        return Output(_js.stringify(inner, 2), "success")
    return Output(_js.stringify(value, 2), "success")


def strip_metadata(text: str) -> Output:
    """`stripCodexOutputMetadata`: Codex's exec banner lines dropped, blank runs squeezed;
    a failure banner (non-zero exit, failed script) makes the status `error`."""
    kept: list[str] = []
    failure: str | None = None
    for line in text.split("\n"):
        if _is_metadata(line):
            if failure is None:
                failure = _failure(line)
            continue
        if len(_js.trim(line)) == 0:
            if not kept or kept[-1] == "":
                continue
            kept.append("")
            continue
        kept.append(line)
    while kept and kept[-1] == "":
        kept.pop()
    if failure is None:
        return Output("\n".join(kept), "success")
    if not kept:
        kept.append(failure)
    return Output("\n".join(kept), "error")


def _is_metadata(line: str) -> bool:
    trimmed = _js.trim(line)
    if not trimmed:
        return False
    return bool(_OUTPUT_LINE.match(trimmed) or _METADATA_LINE.match(trimmed))


def _failure(line: str) -> str | None:
    trimmed = _js.trim(line)
    if _SCRIPT_FAILED.match(trimmed):
        return trimmed
    found = _EXIT.match(trimmed)
    return trimmed if found and int(found.group(1)) != 0 else None


def skill(text: str) -> Skill | None:
    """`parseCodexSkillInjection`: a user message that is one `<skill>` block."""
    trimmed = _js.trim(text)
    if not _SKILL.match(trimmed):
        return None
    name = _tag(trimmed, "name")
    if not name:
        return None
    return Skill(name, _tag(trimmed, "path") or None, trimmed)


def _tag(text: str, tag: str) -> str | None:
    found = re.search(rf"<{tag}\b[^>]*>([\s\S]*?)</{tag}\s*>", text, re.IGNORECASE)
    return (_js.trim(found.group(1)) or None) if found else None


def tool_name(name: Any, namespace: Any) -> str:
    """`qualifyFunctionToolName`: `name:namespace` for an MCP tool."""
    base = name if name is not None else "unknown"
    if not _js.truthy(namespace):
        return _js.string(base)
    server = re.sub(r"__\Z", "", re.sub(r"^mcp__", "", _js.string(namespace)))
    return f"{_js.string(base)}:{server}" if server else _js.string(base)
