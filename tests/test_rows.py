"""The pure rules for trace rows."""

from __future__ import annotations

import pytest

from tracesd.errors import ParseError
from tracesd.models import GitInfo, Trace, TraceMeta
from tracesd.store.rows import changes, storable

META = TraceMeta("codex", "t1", "/s.jsonl", "/w", "title", "preview", 2000, 1000)


def test_changes_never_touch_captured_git_context() -> None:
    stored = Trace("t1", "codex", title="old", directory="/w", git_branch="main")
    assert changes(stored, META, GitInfo(branch="other")) == {
        "title": "title",
        "preview": "preview",
        "timestamp": 2000,
        "source_path": "/s.jsonl",
    }


def test_changes_capture_git_when_the_directory_becomes_known() -> None:
    stored = Trace(
        "t1", "codex", title="title", preview="preview", timestamp=2000, source_path="/s.jsonl"
    )
    assert changes(stored, META, GitInfo("https://h/r.git", "main", "a" * 40)) == {
        "directory": "/w",
        "git_remote_url": "https://h/r.git",
        "git_branch": "main",
        "git_ref": "a" * 40,
    }


def test_unstorable_id_makes_the_session_unreadable() -> None:
    with pytest.raises(ParseError, match="not valid Unicode"):
        storable(TraceMeta("codex", "bad\udc80", "/s", None, None, None, None, None))


def test_a_model_named_later_is_filled_in_and_never_replaced() -> None:
    """The Traces CLI sends a session's first model on every share: a trace captured before
    its session named one gets it once it does, and keeps it when the session switches."""
    meta = TraceMeta("claude-code", "t", "/s", "/w", "t", "p", 2, 1, model="claude-sonnet-4-5")
    stored = Trace(
        id="t",
        agent_id="claude-code",
        title="t",
        preview="p",
        timestamp=2,
        directory="/w",
        source_path="/s",
    )
    assert changes(stored, meta, None) == {"model": "claude-sonnet-4-5"}
    switched = TraceMeta("claude-code", "t", "/s", "/w", "t", "p", 2, 1, model="claude-opus-4")
    assert (
        changes(Trace(**{**stored.as_dict(), "model": "claude-sonnet-4-5"}), switched, None) == {}
    )
    assert changes(stored, TraceMeta("claude-code", "t", "/s", "/w", "t", "p", 2, 1), None) == {}
