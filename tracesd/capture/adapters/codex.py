"""Codex CLI: `sessions/YYYY/MM/DD/rollout-<local-ts>-<uuid>.jsonl` and `archived_sessions/`.

Every line is `{"timestamp", "type", "payload"}`; the first `session_meta` names the
session, its cwd and the git context Codex saw. The first `response_item` with role user
is a synthetic envelope, so the title comes from the first `event_msg` `user_message`.
Subagent rollouts are skipped; compressed `.jsonl.zst` rollouts are not read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import Records, SessionFile, tail_records
from tracesd.capture.adapters._text import session_meta, to_ms
from tracesd.errors import ParseError
from tracesd.models import GitInfo, Parsed

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "codex"

_ENVELOPE = re.compile(
    r"^\s*<(environment_context|user_instructions|INSTRUCTIONS|recommended_plugins|skill|"
    r"subagent_notification|turn_aborted)>.*?</\1>\s*",
    re.DOTALL,
)
_REQUEST_MARKER = "## My request for Codex:"


class Codex:
    agent_id = AGENT_ID
    env_vars = ("CODEX_HOME",)

    def __init__(self, config: Config) -> None:
        base = config.env_path("CODEX_HOME") or config.home / ".codex"
        defaults = [str(base / "sessions"), str(base / "archived_sessions")]
        self._roots = _roots.resolve(config, AGENT_ID, defaults)

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 4  # sessions/YYYY/MM/DD/rollout-*.jsonl

    def matches(self, rel: str) -> bool:
        name = rel.rpartition("/")[2]
        return name.startswith("rollout-") and name.endswith(".jsonl")

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        with SessionFile(path) as f:
            meta: dict[str, Any] | None = None
            meta_ts: int | None = None
            prompt: str | None = None
            model: str | None = None
            records = Records(f)
            for record in records:
                payload = record.get("payload")
                if not isinstance(payload, dict):
                    continue
                kind = record.get("type")
                if kind == "session_meta" and meta is None:
                    meta = payload
                    meta_ts = to_ms(record.get("timestamp"))
                    if _is_subagent(payload):
                        return Parsed([], tuple(f.skipped))
                elif kind == "event_msg" and prompt is None:
                    prompt = _prompt(payload)
                elif kind == "turn_context" and model is None:
                    # the first turn's model: the one the Traces CLI sends
                    found = payload.get("model")
                    model = found if isinstance(found, str) else None
                if meta is not None and prompt is not None and model is not None:
                    break
                if meta is not None and prompt is not None:
                    records.only_containing = b'"turn_context"'  # only the model is missing
            if meta is None:
                records.explain_none()
                return Parsed([], tuple(f.skipped))  # the session_meta line has not landed yet
            last_ts: int | None = None
            last_text: str | None = None
            for entry in tail_records(f):
                last_ts = last_ts or to_ms(entry.get("timestamp"))
                payload = entry.get("payload")
                if not last_text and entry.get("type") == "event_msg" and isinstance(payload, dict):
                    last_text = _message(payload)
                if last_ts and last_text:
                    break
            mtime_ms = f.mtime_ns // 1_000_000
            session_id = meta.get("id")
            if not isinstance(session_id, str) or not session_id:
                raise ParseError("malformed", f"session_meta without an id in {path!r}")

        # The first record's time, as the Traces CLI sends it (`sourceCreatedAt`): the
        # session_meta line is written a few ms after the time it records.
        created = meta_ts or to_ms(meta.get("timestamp")) or mtime_ms
        trace = session_meta(
            AGENT_ID,
            session_id,
            path,
            meta.get("cwd"),
            prompt=prompt,
            last_text=last_text,
            created=created,
            last_activity=last_ts,
            agent_git=_git(meta.get("git")),
            model=model,
        )
        return Parsed([trace], tuple(f.skipped))


def _is_subagent(meta: dict[str, Any]) -> bool:
    source = meta.get("source")
    return isinstance(source, dict) and "subagent" in source


def _prompt(payload: dict[str, Any]) -> str | None:
    if payload.get("type") != "user_message":
        return None
    message = payload.get("message")
    if not isinstance(message, str):
        return None
    while True:  # strip leading envelopes that share the prompt's text block
        stripped = _ENVELOPE.sub("", message, count=1)
        if stripped == message:
            break
        message = stripped
    if _REQUEST_MARKER in message:
        message = message.split(_REQUEST_MARKER, 1)[1]
    return message.strip() or None


def _message(payload: dict[str, Any]) -> str | None:
    if payload.get("type") == "agent_message":
        message = payload.get("message")
        return message.strip() or None if isinstance(message, str) else None
    return _prompt(payload)


def _git(value: Any) -> GitInfo | None:
    if not isinstance(value, dict):
        return None

    def text(key: str) -> str | None:
        item = value.get(key)
        return item if isinstance(item, str) and item else None

    info = GitInfo(text("repository_url"), text("branch"), text("commit_hash"))
    return None if info.empty else info
