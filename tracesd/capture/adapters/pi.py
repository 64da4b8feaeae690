"""Pi coding agent: `<root>/--<encoded cwd>--/<iso-ts>_<uuid>.jsonl`, one JSON entry per line.

The root is `$PI_CODING_AGENT_DIR/sessions`, else `~/.pi/agent/sessions` (macOS too). A
`pi --session-dir <dir>` run writes `<ts>_<uuid>.jsonl` straight into `<dir>`; point the
`[agents.roots]` override at it and those files match as well. The first line is the
header `{"type": "session", "id", "timestamp", "cwd", ...}`: it names the session and its
working directory (the directory name is a lossy encoding and is never read). Nothing is
written before the first assistant reply, so a file that exists already has its prompt.
Entries form a tree inside the file; the title is the first user message in file order.
Version migrations rewrite the file whole with the same header, so the id is stable.

Skipped: files whose first record is not a header (not a Pi session: Pi refuses them too,
ParseError "malformed"), a header alone (Pi writes one when it repairs an empty file),
hidden files. Pi's own `/name` (`session_info`) is not the title: the first prompt is.
Forks (`/fork`, `--fork`: header `parentSession`) are their own sessions, kept: a new id,
a new file the user goes on working in, listed by Pi's own session picker. Their first
entries are copied from the parent, older than the fork's header; the title is the first
prompt typed after the fork, never the parent's copied one.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import Records, SessionFile, tail_records
from tracesd.capture.adapters._text import session_meta, text_of, to_ms
from tracesd.errors import ParseError
from tracesd.models import Parsed

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "pi"

_FILE_ID = re.compile(r"_([0-9A-Fa-f-]{36})\.jsonl$")
# `/skill:name args` is stored expanded: the skill file wrapped in a block, then the args.
_SKILL = re.compile(r'^<skill name="([^"]*)"[^>]*>.*?</skill>\s*', re.DOTALL)


class Pi:
    agent_id = AGENT_ID
    env_vars = ("PI_CODING_AGENT_DIR",)

    def __init__(self, config: Config) -> None:
        base = config.env_path("PI_CODING_AGENT_DIR") or config.home / ".pi" / "agent"
        self._roots = _roots.resolve(config, AGENT_ID, [str(base / "sessions")])

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 2  # <encoded cwd>/<file>; a --session-dir root holds the files directly

    def matches(self, rel: str) -> bool:
        project, sep, name = rel.rpartition("/")
        return (
            (not sep or (bool(project) and "/" not in project))
            and name.endswith(".jsonl")
            and not name.startswith(".")
        )

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        with SessionFile(path) as f:
            records = Records(f)
            header: dict[str, Any] | None = None
            created: int | None = None
            fork = False
            entries = 0
            prompt: str | None = None
            models = _Models()
            for record in records:
                if header is None:
                    if record.get("type") != "session":
                        raise ParseError("malformed", f"no Pi session header in {path!r}")
                    header = record
                    created = to_ms(record.get("timestamp"))
                    fork = bool(record.get("parentSession") or record.get("branchedFrom"))
                    continue
                entries += 1
                models.feed(record)
                if prompt is None and not (fork and not _after(record, created)):
                    prompt = _prompt(record)  # (entries of a fork copied from the parent: not)
                if prompt is not None and models.model is not None:
                    break
            if header is None:
                records.explain_none()
                return Parsed([], tuple(f.skipped))  # only a half-written first line so far
            last_ts: int | None = None
            last_text: str | None = None
            for entry in tail_records(f):
                if entry.get("type") == "session":
                    break
                entries += 1
                last_ts = last_ts or to_ms(entry.get("timestamp"))
                last_text = last_text or _text(entry)
                if last_ts and last_text:
                    break
            mtime_ms = f.mtime_ns // 1_000_000
            if not entries:
                # a header alone (Pi's repair of an empty file): nothing to show yet
                return Parsed([], tuple(f.skipped))
            session_id = _session_id(header, path)

        trace = session_meta(
            AGENT_ID,
            session_id,
            path,
            header.get("cwd"),
            prompt=prompt,
            last_text=last_text,
            created=created or mtime_ms,
            last_activity=last_ts,
            model=models.model,
        )
        return Parsed([trace], tuple(f.skipped))


class _Models:
    """The session's model as the Traces CLI sends it: the one in effect when the first
    user message was sent (the last `model_change`, or message model, before it), else the
    first one named after it."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.model: str | None = None
        self.prompted = False

    def feed(self, record: dict[str, Any]) -> None:
        if self.model is not None:
            return
        named: Any = None
        if record.get("type") == "model_change":
            named = record.get("modelId") or record.get("model")
        elif (message := _message(record)) is not None:
            named = message.get("model") or message.get("modelId")
        if isinstance(named, str) and named.strip():
            self.current = named
            if self.prompted:
                self.model = named
        message = _message(record)
        if not self.prompted and message is not None and message.get("role") == "user":
            self.prompted = True
            self.model = self.current


def _session_id(header: dict[str, Any], path: str) -> str:
    """The header's id; the uuid in the file name if the header has none."""
    value = header.get("id")
    if isinstance(value, str) and value:
        return value
    found = _FILE_ID.search(os.path.basename(path))
    if found is None:
        raise ParseError("malformed", f"Pi session header without an id: {path!r}")
    return found.group(1)


def _after(record: dict[str, Any], created: int | None) -> bool:
    """Whether an entry of a fork was written after the fork (not copied from the parent)."""
    stamp = to_ms(record.get("timestamp"))
    return stamp is not None and (created is None or stamp >= created)


def _message(record: dict[str, Any]) -> dict[str, Any] | None:
    message = record.get("message") if record.get("type") == "message" else None
    return message if isinstance(message, dict) else None


def _prompt(record: dict[str, Any]) -> str | None:
    """The text of a user message, with an expanded `/skill:` block shown as typed."""
    message = _message(record)
    if message is None or message.get("role") != "user":
        return None
    text = text_of(message.get("content"))
    if text is None:
        return None  # images only
    text = text.strip()
    skill = _SKILL.match(text)
    if skill is not None:
        text = text[skill.end() :].strip() or f"/skill:{skill.group(1)}"
    return text or None


def _text(record: dict[str, Any]) -> str | None:
    message = _message(record)
    if message is None:
        return None
    if message.get("role") == "user":
        return _prompt(record)
    if message.get("role") == "assistant":
        text = text_of(message.get("content"))
        return text.strip() or None if text else None
    return None
