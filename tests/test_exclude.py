"""`[capture] exclude` patterns as path globs."""

from __future__ import annotations

import pytest

from tracesd.capture.exclude import glob


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("/home/u/private/**", "/home/u/private", True),
        ("/home/u/private/**", "/home/u/private/a/b", True),
        ("/home/u/private/**", "/home/u/privateer", False),
        ("/home/u/*/secret", "/home/u/x/secret", True),
        ("/home/u/*/secret", "/home/u/x/y/secret", False),
        ("/home/u/**/secret", "/home/u/x/y/secret", True),
        ("/tmp/scratch-?", "/tmp/scratch-1", True),
        ("/tmp/scratch-?", "/tmp/scratch-12", False),
        ("/work/a.b", "/work/aXb", False),
    ],
)
def test_exclude_globs(pattern: str, path: str, excluded: bool) -> None:
    """`*` and `?` stay in one component, `**` crosses them, `dir/**` covers dir itself."""
    assert bool(glob(pattern).fullmatch(path)) is excluded
