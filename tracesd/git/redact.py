"""Credentials out of remote URLs, before they reach the database, the log or the wire.

Remote URLs come from `git remote get-url` and from agents' own records; either may carry
a token (`https://user:ghp_x@github.com/...`) or a password (`user:secret@host:path`).

The scrub is textual and never depends on a URL parser accepting the text: a URL that
does not parse (`https://[::1/x?private_token=S`, a full-width number sign U+FF03 in
the host) loses its credentials like one that does. Every character whose NFKC form holds a
separator (the full-width and small forms of `#?@/:`, U+2047 `??`, ...) counts as that
separator, the way `urllib.parse` and browsers fold them; when in doubt, more is
dropped, never less.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
#: in this order: a character whose NFKC form holds both '?' and '/' cuts the URL there
_SEPARATORS = "?#@/:"
#: schemes whose user name is a login (`ssh://git@host`), kept; in others it may be a token
_LOGIN_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def scrub_url(url: str) -> str:
    """A remote URL without credentials.

    URLs (anything with `://`) lose their query and fragment (from the first `?` or `#`)
    and their user info (`https://u:tok@host/x.git` -> `https://host/x.git`), except that
    ssh URLs keep the user name (`ssh://git:pw@host/x` -> `ssh://git@host/x`). scp-like
    `git@host:org/x.git` and local paths are returned as they are, except that
    `user:secret@host:path` loses its secret.
    """
    url = url.strip()
    skeleton = separator_skeleton(url)
    marker = skeleton.find("://")
    if marker >= 0:
        return _scrub_scheme_url(url, skeleton, marker)
    return _scrub_scp(url, skeleton)


def _scrub_scheme_url(url: str, skeleton: str, marker: int) -> str:
    scheme = url[:marker]
    if _SCHEME.fullmatch(scheme):
        scheme = scheme.lower()
    start = marker + 3
    cut = _first(skeleton, "?#", start)
    url, skeleton = url[:cut], skeleton[:cut]
    authority_end = _first(skeleton, "/", start)
    at = skeleton.rfind("@", start, authority_end)
    if at < 0:
        return f"{scheme}://{url[start:]}"
    rest = url[at + 1 :]
    user_end = _first(skeleton, ":@", start, at)
    user = url[start:user_end]
    if scheme not in _LOGIN_SCHEMES or not user:
        return f"{scheme}://{rest}"
    return f"{scheme}://{user}@{rest}"


def _scrub_scp(url: str, skeleton: str) -> str:
    """scp-like `user:secret@host:path` keeps the user; local paths stay as they are."""
    if skeleton.startswith(("/", ".", "~")):
        return url
    at = skeleton.rfind("@", 0, _first(skeleton, "/", 0))
    if at < 0:
        return url
    user_end = _first(skeleton, ":@", 0, at)
    if skeleton[user_end] != ":":
        return url  # `git@host:path`: a user, no secret
    return url[:user_end] + url[at:]


def _first(skeleton: str, chars: str, start: int, end: int | None = None) -> int:
    """Index of the first of `chars` in skeleton[start:end], else `end` (or its length)."""
    stop = len(skeleton) if end is None else end
    for i in range(start, stop):
        if skeleton[i] in chars:
            return i
    return stop


def separator_skeleton(url: str) -> str:
    """`url` with each character that NFKC-folds to (or into a run holding) a separator
    replaced by that separator; same length, so indexes carry over to `url`. Other
    parsers of remote URLs cut where this one does."""
    return "".join(ch if ch.isascii() else _fold(ch) for ch in url)


@lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    folded = unicodedata.normalize("NFKC", ch)
    for sep in _SEPARATORS:
        if sep in folded:
            return sep
    return ch
