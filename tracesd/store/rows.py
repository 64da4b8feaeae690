"""Pure rules for what a trace row holds: new rows, later changes, storable text."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tracesd.errors import ParseError
from tracesd.git.remote_url import canonical_or_none
from tracesd.models import GitInfo, Trace, TraceMeta, now_ms
from tracesd.utf8 import encodable


def new_trace(meta: TraceMeta, git: GitInfo | None) -> Trace:
    git = git or GitInfo()
    return Trace(
        id=meta.trace_id,
        agent_id=meta.agent_id,
        title=meta.title,
        preview=meta.preview,
        timestamp=meta.timestamp,
        directory=meta.directory,
        source_path=meta.source_path,
        git_remote_url=git.remote_url,
        git_branch=git.branch,
        git_ref=git.ref,
        created_at=meta.created or now_ms(),
        model=meta.model,
    )


def changes(stored: Trace, meta: TraceMeta, git: GitInfo | None) -> dict[str, Any]:
    """Fields the file now says differently. Never the git context, unless the working
    directory was unknown until now (capture is the moment of truth). The model is filled
    in once the session names one, never replaced: the Traces CLI sends a session's first
    model on every share, whatever the session switched to later."""
    out: dict[str, Any] = {}
    if stored.model is None and meta.model is not None:
        out["model"] = meta.model
    for name in ("title", "preview", "timestamp", "source_path"):
        value = getattr(meta, name)
        if value is not None and value != getattr(stored, name):
            out[name] = value
    if stored.directory is None and meta.directory:
        out["directory"] = meta.directory
        if git is not None:
            out.update(git_remote_url=git.remote_url, git_branch=git.branch, git_ref=git.ref)
    return out


def scrubbed(git: GitInfo) -> GitInfo:
    """An agent's own git record, its URL in canonical form like ours (no credentials)."""
    return GitInfo(remote_url=canonical_or_none(git.remote_url), branch=git.branch, ref=git.ref)


def storable(meta: TraceMeta) -> TraceMeta:
    """A title or preview with lone surrogates gets them replaced; an id or a directory that
    is not valid Unicode makes the session unreadable (changing it would change identity)."""
    for value in (meta.trace_id, meta.directory, meta.source_path):
        if value is not None and not encodable(value):
            raise ParseError(
                "malformed", f"session id or directory is not valid Unicode: {value!r}"
            )
    title, preview = _text(meta.title), _text(meta.preview)
    if (title, preview) == (meta.title, meta.preview):
        return meta
    return replace(meta, title=title, preview=preview)


def _text(value: str | None) -> str | None:
    if value is None or encodable(value):
        return value
    return value.encode("utf-8", "replace").decode("utf-8")
