"""What the server's log may say about a failure: never a byte of the request.

A request's bytes reach exception messages in many ways: aiohttp's parser quotes the bad
header line (`Authorization: Bearer <token>\\x01`), a bad request line quotes the URL
with its query, a bug's exception may quote a header value. So a failure is logged as its
exception's type and the frames it went through (`failure`), never its message.

As a net under that rule, `masking` rewrites every line the log handlers emit so that no
configured token appears in it, whatever path the text took.
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

#: frames kept from the end of a traceback
MAX_FRAMES = 12
MASK = "[redacted]"


def failure(exc: BaseException | None) -> dict[str, Any]:
    """Log fields for `exc`: its type and frames (file:line function), not its message."""
    if exc is None:
        return {"error": "unknown"}
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]
    fields: dict[str, Any] = {
        "error": type(exc).__name__,
        "frames": [f"{f.filename}:{f.lineno} {f.name}" for f in frames],
    }
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        fields["cause"] = type(cause).__name__
    return fields


class _Masking(logging.Formatter):
    """Formats with `inner`, then replaces every secret in the result with MASK."""

    def __init__(self, inner: logging.Formatter, secrets: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner
        # as written and as a JSON line escapes it; longest first, so a token that
        # contains another is masked whole
        spellings = {s for s in secrets if s} | {json.dumps(s)[1:-1] for s in secrets if s}
        self.secrets = sorted(spellings, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


@contextlib.contextmanager
def masking(secrets: Sequence[str]) -> Iterator[None]:
    """While inside, the root logger's handlers mask `secrets` in every line they emit."""
    handlers = [h for h in logging.getLogger().handlers if secrets]
    previous = [h.formatter for h in handlers]
    for handler in handlers:
        handler.setFormatter(_Masking(handler.formatter or logging.Formatter(), secrets))
    try:
        yield
    finally:
        for handler, formatter in zip(handlers, previous, strict=True):
            handler.setFormatter(formatter)
