"""The log's edge: tracebacks are data, never the frames' local variables."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from tracesd import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _crash(api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    raise RuntimeError(f"send failed ({len(headers)} headers)")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_logged_traceback_never_shows_local_variables(restore_logging: None, fmt: str) -> None:
    """A crash inside code holding the API key in a local: the traceback is logged (the
    frame names are there) but the key is not."""
    stream = io.StringIO()
    logs.configure(level="info", fmt=fmt, stream=stream)
    secret = "-".join(["sk", "live", "SECRET", "123"])  # not in any source line shown
    try:
        _crash(secret)
    except RuntimeError as exc:
        structlog.get_logger("tracesd.test").error("sync.crashed", exc_info=exc)
    out = stream.getvalue()
    assert "_crash" in out
    assert "send failed" in out
    assert "SECRET" not in out
    if fmt == "json":
        event = json.loads(out.splitlines()[-1])
        assert event["event"] == "sync.crashed"
        assert all("locals" not in frame for frame in event["exception"][0]["frames"])
