"""Claude Code's records that are not the conversation, as the CLI maps them: attachments
(queued prompts, hooks, files, external edits, truncation notices), stop-hook summaries,
and the fields of local commands. Each becomes a system event (`System`), or for a queued
prompt a user message (`Prompt`); claude_code.py emits them in the line's order and keys.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tracesd.messages.readers import _js

SKIPPED_ATTACHMENT_TYPES = frozenset(
    {
        "task_reminder",
        "output_style",
        "deferred_tools_delta",
        "skill_listing",
        "agent_listing_delta",
        "nested_memory",
        "mcp_instructions_delta",
        "command_permissions",
        "auto_mode",
        "compact_file_reference",
        "date_change",
        "dynamic_skill",
        "plan_mode_exit",
    }
)
_HOOK_TRIGGERS = {"Stop": "stop", "SubagentStart": "subagent_start", "PostToolUse": "post_tool_use"}


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str


@dataclass(frozen=True, slots=True)
class System:
    subtype: str
    data: dict[str, Any]


def attachment(p: Any, written: Collection[str]) -> list[Prompt | System]:
    """What an `attachment` line makes (`written`: the paths the agent's own tools wrote,
    whose edits are not external)."""
    kind = _js.get(p, "type")
    if not _js.truthy(kind) or kind in SKIPPED_ATTACHMENT_TYPES:
        return []
    if (
        kind == "queued_command"
        and _js.get(_js.get(p, "origin"), "kind") == "human"
        and p.get("commandMode") == "prompt"
    ):
        text = _queued_text(p.get("prompt"))
        return [Prompt(text)] if text else []
    if kind in ("hook_system_message", "hook_additional_context", "hook_success"):
        made = _hook(kind, p)
        return [made] if made is not None else []
    if kind == "goal_status":
        return [System("goal_status", {n: _js.get(p, n) for n in ("condition", "met", "sentinel")})]
    if kind in ("file", "directory"):
        fields = {n: _js.get(p, n) for n in ("filename", "path", "displayPath")}
        return [System("context.attachment", {"attachmentKind": kind, **fields})]
    if kind == "edited_text_file" and _js.truthy(p.get("filename")):
        if p["filename"] in written:
            return []
        snippet = _js.get(p, "snippet")
        if isinstance(snippet, str):
            snippet = _js.slice16(snippet, 500)
        elif isinstance(snippet, list):
            snippet = snippet[:500]
        elif not _js.nullish(snippet):
            raise TypeError("snippet.slice is not a function")
        return [
            System("environment.external_edit", {"filename": p["filename"], "snippet": snippet})
        ]
    if kind == "read_truncation_notice":
        return [
            System("environment.truncation", {n: _js.get(p, n) for n in ("toolUseID", "banner")})
        ]
    return []


def _hook(kind: str, p: dict[str, Any]) -> System | None:
    event = p.get("hookEvent")
    trigger = _HOOK_TRIGGERS.get(event) if isinstance(event, str) else None
    content = p.get("content")
    base = {"trigger": trigger, "nativeInvocationId": _js.get(p, "toolUseID")}
    if not trigger or not _js.truthy(p.get("hookName")):
        return None
    if kind == "hook_system_message" and isinstance(content, str):
        return System(
            "lifecycle.hook",
            {"kind": "message", **base, "hookName": p["hookName"], "message": content},
        )
    if kind == "hook_additional_context" and isinstance(content, list):
        context = [c for c in content if isinstance(c, str)]
        return System(
            "lifecycle.hook",
            {"kind": "context", **base, "hookName": p["hookName"], "context": context},
        )
    if (
        kind == "hook_success"
        and _js.truthy(p.get("command"))
        and _js.is_number(p.get("durationMs"))
    ):
        stdout, stderr = _js.get(p, "stdout"), _js.get(p, "stderr")
        return System(
            "lifecycle.hook",
            {
                "kind": "result",
                **base,
                "hookName": p["hookName"],
                "command": p["command"],
                "durationMs": p["durationMs"],
                "status": "success",
                "exitCode": _js.get(p, "exitCode"),
                "content": content if isinstance(content, str) else "",
                "stdout": "" if _js.nullish(stdout) else stdout,
                "stderr": "" if _js.nullish(stderr) else stderr,
            },
        )
    return None


def stop_hooks(e: dict[str, Any]) -> System:
    """A `stop_hook_summary` line."""
    infos: Any = e.get("hookInfos")
    handlers: list[dict[str, Any]] = []
    if _js.nullish(infos):
        infos = []
    if not isinstance(infos, list):
        raise TypeError("hookInfos.flatMap is not a function")
    for info in infos:
        duration = _js.get(info, "durationMs")
        if not _js.is_number(duration):
            continue
        if _js.truthy(_js.get(info, "promptText")) and _js.truthy(_js.get(info, "command")):
            handlers.append(
                {
                    "kind": "prompt",
                    "command": info["command"],
                    "promptText": info["promptText"],
                    "durationMs": duration,
                }
            )
        elif _js.truthy(_js.get(info, "command")):
            handlers.append({"kind": "command", "command": info["command"], "durationMs": duration})
    errors = e.get("hookErrors")
    count = len(errors) if isinstance(errors, list | str) else 0
    return System(
        "lifecycle.hook",
        {
            "kind": "summary",
            "trigger": "stop",
            "nativeInvocationId": e.get("toolUseID", _js.UNDEFINED),
            "handlers": handlers,
            "hasOutput": e.get("hasOutput") is True,
            "errorCount": count,
        },
    )


def _queued_text(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return prompt or None
    if not isinstance(prompt, list):
        return None
    texts = [
        b["text"]
        for b in prompt
        if _js.get(b, "type") == "text" and isinstance(_js.get(b, "text"), str)
    ]
    return _js.trim("\n".join(texts)) or None


def field(content: Any, name: str) -> str | None:
    """`extractLocalCommandField`: the text of `<name>...</name>`, entities decoded."""
    if not _js.truthy(content) or not isinstance(content, str):
        return None
    found = re.search(f"<{name}>([\\s\\S]*?)</{name}>", content)
    if found is None:
        return None
    text = found.group(1)
    for entity, char in (
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
        ("&quot;", '"'),
        ("&#39;", "'"),
    ):
        text = text.replace(entity, char)
    return text
