"""Amp: one JSON document per thread, `<root>/T-<uuid>.json`, rewritten whole on change.

Roots (each holds thread files directly, depth 1): `$XDG_DATA_HOME/amp/threads`, else
`~/.local/share/amp/threads` (the CLI and current editor extensions, macOS included), and
the editor extension's legacy stores `<User>/globalStorage/sourcegraph.amp/threads3` of
VS Code (and Insiders, VSCodium), Cursor and Windsurf. A thread copied from a legacy store
into the central one keeps its id, so both files are the same trace.

The id is the file name (`T-<uuid>`, which is also the document's `id`: the name stays
the same through every rewrite, and wins if the two ever differ); the working
directory is `env.initial.trees[0].uri`, a percent-encoded `file://` URI (or
`env.initial.cwd`); the git context Amp saw is `trees[0].repository`. The title is the
first user message's text (`role: info` summaries and tool results are not prompts; Amp's
own generated `title` is not used). Last activity is the newest `meta.sentAt` /
`usage.timestamp`, else the file's mtime.

A document larger than the whole-file read cap is read in a head and a tail window: the id,
`created` and first prompt come from the head, and `env` (which Amp writes last) and the
latest times from the tail. A document caught half-written is `incomplete`: the write that
completes it brings another event. Skipped: threads without any message yet, other files
(temp files, `*.json.tmp`, hidden files).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from tracesd.capture.adapters import _roots, _vscode
from tracesd.capture.adapters._docs import Document
from tracesd.capture.adapters._files import SessionFile
from tracesd.capture.adapters._text import latest, session_meta, text_of, to_ms
from tracesd.errors import ParseError
from tracesd.models import GitInfo, Parsed

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "amp"

_THREAD_FILE = re.compile(r"^(T-[0-9A-Za-z][0-9A-Za-z-]*)\.json$")
_EDITORS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf")
_WINDOWS_DRIVE = re.compile(r"^/[A-Za-z]:[/\\]")


class _Thread(NamedTuple):
    """What a thread document says, read whole or from its head and tail windows."""

    id: Any
    created: Any
    env: Any
    prompt: str | None
    last_text: str | None
    stamps: list[int | None]
    #: the first message's time, as the Traces CLI sends it (`sourceCreatedAt`)
    first: int | None = None
    #: the first assistant message's model
    model: str | None = None


class Amp:
    agent_id = AGENT_ID
    env_vars = ("XDG_DATA_HOME", *_vscode.ENV_VARS)

    def __init__(self, config: Config) -> None:
        central = _roots.xdg_data_home(config) / "amp" / "threads"
        legacy = [
            user / "globalStorage" / "sourcegraph.amp" / "threads3"
            for user in _vscode.user_dirs(config, _EDITORS)
        ]
        self._roots = _roots.resolve(config, AGENT_ID, [str(p) for p in (central, *legacy)])

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 1

    def matches(self, rel: str) -> bool:
        return rel.startswith("T-") and _THREAD_FILE.match(rel) is not None

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        with SessionFile(path) as f:
            doc = Document(f)
            mtime_ms = f.mtime_ns // 1_000_000
        thread = _partial(doc) if doc.partial else _whole(doc)
        if thread is None:
            return Parsed([])
        stem = _THREAD_FILE.match(os.path.basename(path))
        trace_id = stem.group(1) if stem else thread.id
        if not isinstance(trace_id, str) or not trace_id:
            raise ParseError("malformed", f"Amp thread without an id: {path!r}")
        created = thread.first or to_ms(thread.created) or mtime_ms
        cwd, git = _environment(thread.env)
        trace = session_meta(
            AGENT_ID,
            trace_id,
            path,
            cwd,
            prompt=thread.prompt,
            last_text=thread.last_text,
            created=created,
            last_activity=latest(*thread.stamps) or mtime_ms,
            agent_git=git,
            model=thread.model,
        )
        return Parsed([trace])


def _whole(doc: Document) -> _Thread | None:
    document = doc.require(dict)
    listed = document.get("messages")
    messages = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    if not any(m.get("role") in ("user", "assistant") for m in messages):
        if "id" not in document and "messages" not in document:
            raise ParseError("malformed", f"not an Amp thread: {doc.path!r}")
        return None  # created, nothing said yet
    return _Thread(
        id=document.get("id"),
        created=document.get("created"),
        env=document.get("env"),
        prompt=next((t for m in messages if (t := _prompt(m)) is not None), None),
        last_text=next((t for m in reversed(messages) if (t := _text(m))), None),
        stamps=[_stamp(m) for m in messages],
        first=_first(messages),
        model=_model(messages),
    )


def _partial(doc: Document) -> _Thread:
    """A document too large to parse whole: what its head and tail windows hold."""
    if not doc.tail.rstrip().endswith("}"):
        raise ParseError("incomplete", f"not a complete JSON document: {doc.path!r}")
    messages = doc.leading_items("messages")
    env = doc.member("env", in_tail=True)
    if not isinstance(env, dict):
        env = doc.member("env")
    texts = [t.strip() for t in doc.values("text") if isinstance(t, str) and t.strip()]
    stamps = [to_ms(v) for key in ("sentAt", "timestamp") for v in doc.values(key)]
    return _Thread(
        id=doc.member("id"),
        created=doc.member("created"),
        env=env,
        prompt=next((t for m in messages if (t := _prompt(m)) is not None), None),
        last_text=texts[-1] if texts else None,
        stamps=stamps,
        first=_first(messages),
        model=_model(messages),
    )


def _prompt(message: Any) -> str | None:
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    text = text_of(message.get("content"))  # text blocks only: not tool results, not images
    return text.strip() or None if text else None


def _text(message: dict[str, Any]) -> str | None:
    if message.get("role") == "assistant":
        text = text_of(message.get("content"))
        return text.strip() or None if text else None
    return _prompt(message)


def _stamp(message: dict[str, Any]) -> int | None:
    meta, usage = message.get("meta"), message.get("usage")
    return latest(
        to_ms(meta.get("sentAt")) if isinstance(meta, dict) else None,
        to_ms(usage.get("timestamp")) if isinstance(usage, dict) else None,
    )


def _sent(message: Any) -> int | None:
    """A message's time as the Traces CLI reads it: `usage.timestamp`, else `meta.sentAt`."""
    if not isinstance(message, dict):
        return None
    usage, meta = message.get("usage"), message.get("meta")
    stamp = to_ms(usage.get("timestamp")) if isinstance(usage, dict) else None
    if stamp is None and isinstance(meta, dict) and isinstance(meta.get("sentAt"), int | float):
        stamp = to_ms(meta["sentAt"])
    return stamp


def _first(messages: list[Any]) -> int | None:
    """The earliest message time (the Traces CLI's `sourceCreatedAt`), None without any."""
    stamps = [s for m in messages if (s := _sent(m)) is not None and s > 0]
    return min(stamps) if stamps else None


def _model(messages: list[Any]) -> str | None:
    """The first assistant message's `usage.model` (what the Traces CLI sends)."""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "assistant":
            usage = message.get("usage")
            model = usage.get("model") if isinstance(usage, dict) else None
            if isinstance(model, str) and model.strip():
                return model
    return None


def _environment(env: Any) -> tuple[str | None, GitInfo | None]:
    """The working directory and git context of `env.initial`."""
    initial = env.get("initial") if isinstance(env, dict) else None
    if not isinstance(initial, dict):
        return None, None
    trees = initial.get("trees")
    tree = trees[0] if isinstance(trees, list) and trees and isinstance(trees[0], dict) else {}
    cwd = _vscode.file_path(tree.get("uri"))
    if cwd is None:
        fallback = initial.get("cwd")
        cwd = fallback if isinstance(fallback, str) and fallback else None
    return cwd, _git(tree.get("repository"))


def _git(repository: Any) -> GitInfo | None:
    if not isinstance(repository, dict) or repository.get("type", "git") != "git":
        return None

    def text(key: str) -> str | None:
        value = repository.get(key)
        return value if isinstance(value, str) and value else None

    ref = text("ref")
    branch: str | None = None
    if ref is not None and ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/") or None
    elif ref is not None and not ref.startswith("refs/") and ref != "HEAD":
        branch = ref
    info = GitInfo(remote_url=text("url"), branch=branch, ref=text("sha"))
    return None if info.empty else info
