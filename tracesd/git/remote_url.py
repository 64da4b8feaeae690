"""The canonical repository URL: one identity for a repository, whatever form its remote has.

INTERFACE section 5. The Traces CLI's rule for the usual forms, without its quirks, so
tracesd, the CLI and the server agree on which traces belong to one repository:

- `ssh://[user@]host[:port]/path[.git]` and scp-like `[user@]host:path[.git]` ->
  `https://host/path` (no user, no port);
- `http(s)://[user[:pass]@]host[:port]/path[.git][/][?query][#frag]` ->
  `http(s)://host[:port]/path`;
- anything else (a local path, `file://`, `git://`) is kept as given, minus credentials.

Hosts are lower-cased (ASCII letters: DNS names), and a path loses every trailing `/`,
`.git` and blank (so `o/r.git/` is `o/r`). Credentials go first, through `scrub_url`;
everything after only cuts what is left, so nothing it dropped can come back. The cuts are
found on `separator_skeleton`, as scrub_url finds them, so a character that folds to a
separator cuts here exactly where it cuts there, and the rule is idempotent:
`canonical(canonical(x)) == canonical(x)` for every string.
"""

from __future__ import annotations

import string

from tracesd.git.redact import scrub_url, separator_skeleton

_SSH = frozenset({"ssh", "git+ssh", "ssh+git"})
_HTTP = frozenset({"http", "https"})
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def canonical(url: str) -> str:
    """The canonical form of a remote URL (see the module docstring); never a credential."""
    clean = scrub_url(url)
    skeleton = separator_skeleton(clean)
    marker = skeleton.find("://")
    if marker < 0:
        return _scp(clean, skeleton).rstrip()
    scheme = clean[:marker]
    if scheme in _SSH:
        return _web("https", clean, skeleton, marker + 3, keep_port=False)
    if scheme in _HTTP:
        return _web(scheme, clean, skeleton, marker + 3, keep_port=True)
    return clean.rstrip()


def canonical_or_none(url: str | None) -> str | None:
    """`canonical`, with None (and a URL that canonicalises to nothing) as None."""
    if url is None:
        return None
    return canonical(url) or None


def _web(scheme: str, url: str, skeleton: str, start: int, *, keep_port: bool) -> str:
    """scheme://host[:port]/path from a scrubbed URL whose authority begins at `start`."""
    end = skeleton.find("/", start)
    end = len(skeleton) if end < 0 else end
    at = skeleton.rfind("@", start, end)  # scrub_url kept only an ssh login name
    host, port = _host_port(url[at + 1 : end] if at >= 0 else url[start:end], skeleton, end)
    return _join(scheme, host, port if keep_port else "", url[end:])


def _host_port(authority: str, skeleton: str, end: int) -> tuple[str, str]:
    """(host, `:port` or ""); an IPv6 host keeps its brackets."""
    folded = skeleton[end - len(authority) : end]
    if folded.startswith("["):
        close = folded.find("]")
        if close >= 0:
            return authority[: close + 1], authority[close + 1 :]
    colon = folded.find(":")
    if colon < 0:
        return authority, ""
    return authority[:colon], authority[colon:]


def _scp(url: str, skeleton: str) -> str:
    """`[user@]host:path` as https://host/path; a local path (no colon before the first
    slash, as git decides) or an odd host is kept as it is."""
    colon = skeleton.find(":")
    slash = skeleton.find("/")
    if colon <= 0 or 0 <= slash < colon:
        return url
    host_start = skeleton.rfind("@", 0, colon) + 1
    if skeleton.startswith("[", host_start):  # git@[::1]:path
        close = skeleton.find("]", host_start)
        if close >= 0 and skeleton.startswith(":", close + 1):
            colon = close + 1
    host = url[host_start:colon]
    if not host.strip() or any(c in skeleton[host_start:colon] for c in "?#/@"):
        return url
    cut = min(
        (i for i in (skeleton.find("?", colon), skeleton.find("#", colon)) if i >= 0),
        default=len(url),
    )
    path = url[colon + 1 : cut]
    if not skeleton.startswith("/", colon + 1):
        path = "/" + path
    return _join("https", host, "", path)


def _join(scheme: str, host: str, port: str, path: str) -> str:
    while True:  # `o/r.git/`, `o/r/.git`, `o/r.git.git`: every trailing piece goes
        trimmed = path.rstrip().rstrip("/").removesuffix(".git")
        if trimmed == path:
            break
        path = trimmed
    return f"{scheme}://{host.translate(_LOWER)}{port}{path}".rstrip()
