"""Who is asking: bearer tokens, the user each one is, and that user's one namespace.

Every configured token (TRACESD_SERVER_TOKENS) is its own user with one individual
namespace; `trk_` tokens (the Traces CLI's API keys) and other tokens (its user tokens)
authenticate the same way. A user's ids and slug are derived from a SHA-256 of its token
(domain-separated, truncated): stable across restarts and databases, so the Traces CLI's
recorded namespace stays valid, and not the token (never logged, never answered).
Without auth (`--no-auth`) every request is the one `ANONYMOUS` user.

A token is compared with every configured token in constant time each.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

log = structlog.get_logger("tracesd.server")


@dataclass(frozen=True, slots=True)
class User:
    """One caller: a user with one individual namespace (the only one it sees)."""

    id: str
    slug: str
    display_name: str
    namespace_id: str

    def namespace(self) -> dict[str, Any]:
        """The API's Namespace object."""
        return {
            "id": self.namespace_id,
            "slug": self.slug,
            "type": "individual",
            "displayName": self.display_name,
            "role": "owner",
        }

    def session(self) -> dict[str, Any]:
        """`GET /v1/session`'s data."""
        namespace = self.namespace()
        return {
            "user": {"id": self.id, "slug": self.slug, "displayName": self.display_name},
            "activeNamespace": namespace,
            "namespaces": [namespace],
        }


ANONYMOUS = User(
    id="user-anonymous",
    slug="anonymous",
    display_name="Anonymous (no auth)",
    namespace_id="ns-anonymous",
)

USER = web.RequestKey("user", User)


class Unauthorized(Exception):
    """No bearer token, or one that is not configured."""


def user_for(token: str) -> User:
    """The user `token` stands for: ids from a hash, never the token itself."""
    digest = hashlib.sha256(b"tracesd-server-user\x00" + _raw(token)).hexdigest()
    slug = f"user-{digest[:10]}"
    return User(
        id=f"user-{digest[:20]}",
        slug=slug,
        display_name=f"tracesd {slug}",
        namespace_id=f"ns-{digest[:20]}",
    )


def users_for(tokens: Sequence[str]) -> list[User]:
    """The users of `tokens`, in order, one per distinct token."""
    seen: dict[str, User] = {}
    for token in tokens:
        if token not in seen:
            seen[token] = user_for(token)
    return list(seen.values())


def middleware(tokens: Sequence[str] | None) -> Middleware:
    """Sets `request[USER]`: from the bearer token, or ANONYMOUS when `tokens` is None.
    Raises Unauthorized (the error middleware answers 401) for a missing or unknown token."""
    if tokens is None:

        @web.middleware
        async def anonymous(request: web.Request, handler: Handler) -> web.StreamResponse:
            request[USER] = ANONYMOUS
            return await handler(request)

        return anonymous

    known = [(_raw(token), user_for(token)) for token in tokens]

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        user = _find(given.strip(), known) if scheme.lower() == "bearer" else None
        if user is None:
            log.info(
                "server.unauthorized",
                method=request.method,
                path=request.path,
                remote=request.remote,
                reason="unknown token" if scheme.lower() == "bearer" else "no bearer token",
            )
            raise Unauthorized
        request[USER] = user
        return await handler(request)

    return bearer


def _find(given: str, known: Sequence[tuple[bytes, User]]) -> User | None:
    """The user whose token is `given`; every token is compared, in constant time each."""
    candidate = _raw(given)
    found: User | None = None
    for secret, user in known:
        if hmac.compare_digest(candidate, secret) and candidate:
            found = user
    return found


def _raw(token: str) -> bytes:
    return token.encode("utf-8", "surrogatepass")
