"""Credentials out of remote URLs, before they reach the database, the log or the wire.

Remote URLs come from `git remote get-url` and from agents' own records; either may carry
a token (`https://user:ghp_x@github.com/...`) or a password (`user:secret@host:path`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SCP_PASSWORD = re.compile(r"^([^@/:]+):[^@/]*@")


def scrub_url(url: str) -> str:
    """A remote URL without credentials.

    http(s): user info, query and fragment removed (`https://u:tok@host/x.git` ->
    `https://host/x.git`). Other `scheme://` URLs keep the user name but lose any password.
    scp-like `git@host:org/x.git` and local paths are returned as they are, except that
    `user:secret@host:path` loses its secret.
    """
    url = url.strip()
    if "://" not in url:
        # scp-like `user:secret@host:path` (git takes it): keep the user, drop the secret.
        return _SCP_PASSWORD.sub(r"\1@", url)
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return re.sub(r"://[^/]*@", "://", url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    userinfo, at, _ = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}@{host}" if at and user else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
