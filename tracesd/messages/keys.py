"""Source keys as the real Traces CLI assigns them while it reads a session.

`Counter` is its `bn()`: `<type>:<native id>`, or `<type>:<n>` with n counting the keys of
that type handed out so far. Readers that follow a growing file keep a counter's `state()`
between reads, so the n-th key of a type is the same whether the file is read in one go or
line by line.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracesd.messages import ids


class Counter:
    """Hands out `<type>:<native id or n>` keys (the CLI's `bn`)."""

    def __init__(self, state: Mapping[str, int] | None = None) -> None:
        self._seen: dict[str, int] = dict(state or {})

    def __call__(self, kind: str, native_id: str | None = None) -> str:
        index = self._seen.get(kind, 0)
        self._seen[kind] = index + 1
        return ids.source_key(kind, native_id, index)

    def state(self) -> dict[str, int]:
        return dict(self._seen)


def key(kind: str, native_id: str | None, index: int = 0) -> str:
    """The CLI's `Ho`: one key without a counter."""
    return ids.source_key(kind, native_id, index)
