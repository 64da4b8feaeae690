"""SQLite `file:` URIs: the one way a path becomes one.

A path is not a URI: `#` starts a fragment, `?` a query, `%` an escape, and a path that
starts with `//` names a host. Unquoted, `/data/a#b/traces.db` opens `/data/a` read-write
and ignores `mode=ro` (a stray file, and the wrong database). Here every byte of the path
outside `[A-Za-z0-9_.~/-]` is percent-encoded, and the path always follows an empty
authority (`file:///...`).
"""

from __future__ import annotations

import os
from urllib.parse import quote


def read_only(path: str | os.PathLike[str]) -> str:
    """A URI that opens the database at `path` read-only (never creating it)."""
    return uri(path, "mode=ro")


def uri(path: str | os.PathLike[str], query: str = "") -> str:
    """The `file:` URI of `path` (relative paths against the current directory; not
    normalised, so `..` after a symlink means what it means to the kernel)."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        text = os.path.join(os.getcwd(), text)
    # os.fsencode: the path's own bytes (undecodable ones kept by surrogateescape)
    encoded = quote(os.fsencode(text), safe="/")
    return f"file://{encoded}" + (f"?{query}" if query else "")
