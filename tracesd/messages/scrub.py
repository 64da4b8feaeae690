"""The secrets the real Traces CLI scrubs from every string of an event before upload.

Its list (`Mz` in the 0.6.31 binary), applied in order to every string value: keys, tokens,
private keys, database URLs with credentials, e-mail addresses, bearer JWTs, `*_SECRET=`-like
assignments and blocks of connection settings. tracesd applies the same list, so what it
uploads is what the CLI would upload, and no credential in a session reaches the wire.

The patterns are the CLI's JavaScript ones; where Python's `re` reads a construct otherwise
they are spelled out: JavaScript's `\\s`, ASCII-only case folding and `\\b`, and `$` as the
very end of the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: JavaScript's `\s`
_S = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_R = "[REDACTED]"
_AI = re.ASCII | re.IGNORECASE

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"AKIA[0-9A-Z]{16}"), _R),
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}"), _R),
    (re.compile(r"github_pat_[A-Za-z0-9_]{20,}"), _R),
    (re.compile(r"sk_(?:live|test)_[A-Za-z0-9]{24,}"), _R),
    (re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}"), _R),
    (re.compile(r"sk-(?!ant-)[A-Za-z0-9_-]{20,}"), _R),
    (re.compile(r"AIzaSy[A-Za-z0-9_-]{33}"), _R),
    (re.compile(r"xox[bpras]-[A-Za-z0-9-]{10,}"), _R),
    (re.compile(r"npm_[A-Za-z0-9]{36,}"), _R),
    (re.compile(r"pypi-[A-Za-z0-9]{16,}"), _R),
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), _R),
    (re.compile(r"vercel_[A-Za-z0-9]{24,}"), _R),
    (re.compile(r"sbp_[A-Za-z0-9]{20,}"), _R),
    (re.compile(r"trk_[A-Za-z0-9]{32,}"), _R),
    (re.compile(r"\bprod:[a-z0-9-]+\|[A-Za-z0-9+/]{20,}={0,2}", re.ASCII), _R),
    (re.compile(r"\bsession_[A-Za-z0-9]{24,}\b", re.ASCII), _R),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        _R,
    ),
    (
        re.compile(
            r"(postgres|postgresql|mysql|mongodb(?:\+srv)?|redis|amqp)s?://"
            rf"[^{_S}\"'`,;)}}\]]*@[^{_S}\"'`,;)}}\]]+",
            _AI,
        ),
        _R,
    ),
    (
        re.compile(
            r"(^|[^/A-Z0-9._%+-])([A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,})(?=\Z|[^A-Z0-9._%+-])",
            _AI,
        ),
        r"\1" + _R,
    ),
    (
        re.compile(r"Bearer[" + _S + r"]+[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
        "Bearer " + _R,
    ),
    (
        re.compile(
            r"([A-Z_0-9]*(?:SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|_KEY)[A-Z_0-9]*)="
            rf"(\"[^\"]*\"|'[^']*'|[^{_S}]+)",
            _AI,
        ),
        r"\1=" + _R,
    ),
    (
        re.compile(
            r"(?:^|\n)((?:[A-Z][A-Z0-9_]*(?:_DSN|_URL|_URI|_ENDPOINT|_HOST|_CONN|_CONNECTION)"
            r"=[^\n]+\n?){2,})",
            re.MULTILINE,
        ),
        "\n[REDACTED_ENV_BLOCK]",
    ),
)


_KEYWORDS = ("secret", "password", "passwd", "token", "credential", "private", "_key")
_SETTINGS = ("_DSN", "_URL", "_URI", "_ENDPOINT", "_HOST", "_CONN")


def _always(_: str) -> bool:
    return True


#: per pattern (by index), text it cannot match without: a cheap test that skips the
#: patterns that would scan a text in vain (the `*_KEY=` one costs ~400 us/KB of prose)
_NEEDS: dict[int, Callable[[str], bool]] = {
    14: lambda t: "prod:" in t,
    15: lambda t: "session_" in t,
    17: lambda t: "://" in t and "@" in t,
    18: lambda t: "@" in t,
    20: lambda t: "=" in t and any(k in t.lower() for k in _KEYWORDS),
    21: lambda t: "=" in t and any(k in t for k in _SETTINGS),
}
_CHECKED = tuple(
    (pattern, replacement, _NEEDS.get(i, _always))
    for i, (pattern, replacement) in enumerate(_PATTERNS)
)


def text(value: str) -> str:
    """`value` with every secret the CLI knows replaced."""
    for pattern, replacement, needs in _CHECKED:
        if needs(value):
            value = pattern.sub(replacement, value)
    return value


def values(value: Any) -> Any:
    """Every string in a JSON-like structure scrubbed; keys and other values as they are."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [values(item) for item in value]
    if isinstance(value, dict):
        return {key: values(item) for key, item in value.items()}
    return value
