"""Claude Code: `<root>/<encoded-cwd>/<session-uuid>.jsonl`, one JSON record per line.

The directory name is a lossy encoding of the working directory, so the cwd is read from
the records. Subagent transcripts (`<session>/subagents/agent-*.jsonl`, and the older
`agent-*.jsonl` beside the sessions) are part of their parent session, not traces.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import Records, SessionFile, tail_records
from tracesd.capture.adapters._text import latest, preview, text_of, title, to_ms
from tracesd.models import GitInfo, Parsed, TraceMeta

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "claude-code"

# Records that look like user prompts but are not: slash-command envelopes, local
# command output, meta caveats, compaction summaries.
_NOT_A_PROMPT = (
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<local-command-stdout>",
    "<local-command-stderr>",
    "<bash-input>",
    "<bash-stdout>",
    "<user-prompt-submit-hook>",
    "Caveat:",
    "This session is being continued",
)
# Context wrappers an IDE puts around (or before) the real prompt.
_WRAPPERS = re.compile(
    r"<(ide_opened_file|ide_selection|ide_diagnostics|system-reminder)>.*?</\1>", re.DOTALL
)

#: what Claude Code writes as the model of messages no model wrote (`<synthetic>`)
_STAND_IN = re.compile(r"^<.*>$", re.DOTALL)


class ClaudeCode:
    agent_id = AGENT_ID
    env_vars = ("CLAUDE_CONFIG_DIR",)

    def __init__(self, config: Config) -> None:
        configured = config.environ.get("CLAUDE_CONFIG_DIR", "")
        bases = [p.strip() for p in configured.split(",") if p.strip()]
        if bases:
            defaults = [str(config.expand(b) / "projects") for b in bases]
        else:
            defaults = [
                str(config.home / ".claude" / "projects"),
                str(config.home / ".config" / "claude" / "projects"),
            ]
        self._roots = _roots.resolve(config, AGENT_ID, defaults)

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 2

    def matches(self, rel: str) -> bool:
        project, sep, name = rel.partition("/")
        return (
            bool(sep and project)
            and "/" not in name
            and name.endswith(".jsonl")
            and not name.startswith(("agent-", "."))
        )

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        with SessionFile(path) as f:
            head = _Head()
            records = Records(f)
            for record in records:
                head.feed(record)
                if head.done:
                    break
                if head.only_model_missing:
                    records.only_containing = b'"model"'  # the rest is passed over undecoded
            if head.sidechain:
                return Parsed([], tuple(f.skipped))
            if not head.messages:
                records.explain_none()
                # nothing but bookkeeping yet: not a session until a message lands
                return Parsed([], tuple(f.skipped))
            last_ts: int | None = None
            last_text: str | None = None
            for entry in tail_records(f):
                last_ts = last_ts or to_ms(entry.get("timestamp"))
                last_text = last_text or _message_text(entry)
                if last_ts and last_text:
                    break
            mtime_ms = f.mtime_ns // 1_000_000

        session_id = os.path.basename(path)[: -len(".jsonl")]
        trace = TraceMeta(
            agent_id=AGENT_ID,
            trace_id=session_id,
            source_path=path,
            directory=head.cwd,
            title=title(head.prompt),
            preview=preview(last_text or head.prompt),
            timestamp=latest(last_ts, head.created) or mtime_ms,
            created=head.created or mtime_ms,
            agent_git=GitInfo(branch=head.branch) if head.branch else None,
            model=head.model,
        )
        return Parsed([trace], tuple(f.skipped))


class _Head:
    """What the first records of a transcript say. Stops once everything is known."""

    def __init__(self) -> None:
        self.cwd: str | None = None
        self.prompt: str | None = None
        self.created: int | None = None
        self.branch: str | None = None
        #: the first assistant message's model, as the Traces CLI sends it (`<synthetic>`
        #: and the like, Claude Code's own stand-ins, are not models)
        self.model: str | None = None
        self.messages = 0
        self.sidechain = False

    @property
    def done(self) -> bool:
        return self.sidechain or (
            self.cwd is not None
            and self.prompt is not None
            and self.created is not None
            and self.model is not None
        )

    @property
    def only_model_missing(self) -> bool:
        return (
            self.model is None
            and self.cwd is not None
            and self.prompt is not None
            and self.created is not None
        )

    def feed(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind not in ("user", "assistant"):
            return
        if record.get("isSidechain") is True:
            # a file that starts as a sidechain is a subagent's; a sidechain record later in
            # a session (older Claude Code interleaved them) is not the session's own
            self.sidechain = self.sidechain or not self.messages
            return
        self.messages += 1
        if self.created is None:
            self.created = to_ms(record.get("timestamp"))
        cwd = record.get("cwd")
        if self.cwd is None and isinstance(cwd, str) and cwd:
            self.cwd = cwd
        branch = record.get("gitBranch")
        if self.branch is None and isinstance(branch, str) and branch and branch != "HEAD":
            self.branch = branch
        if self.prompt is None and kind == "user":
            self.prompt = _prompt(record)
        if self.model is None and kind == "assistant":
            self.model = _model(record)


def _prompt(record: dict[str, Any]) -> str | None:
    """The text of a real user prompt, or None for tool results and envelopes."""
    if record.get("isMeta") or record.get("isCompactSummary"):
        return None
    message = record.get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return None
    text = text_of(content)
    if text is None:
        return None
    text = _WRAPPERS.sub("", text).strip()
    if not text or text.startswith(_NOT_A_PROMPT):
        return None
    return text


def _model(record: dict[str, Any]) -> str | None:
    message = record.get("message")
    model = message.get("model") if isinstance(message, dict) else None
    if not isinstance(model, str) or not model.strip() or _STAND_IN.match(model.strip()):
        return None
    return model


def _message_text(record: dict[str, Any]) -> str | None:
    kind = record.get("type")
    if kind == "user":
        return _prompt(record)
    if kind == "assistant":
        message = record.get("message")
        if isinstance(message, dict):
            text = text_of(message.get("content"))
            return text.strip() or None if text else None
    return None
