"""Credentials never survive `scrub_url`, whether or not the URL parses (issue 10, 2.10)."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracesd.git.redact import scrub_url

#: how a separator may be spelled: ASCII, and forms whose NFKC is that separator
AT = st.sampled_from(["@", "@", "＠", "﹫"])
QUESTION = st.sampled_from(["?", "?", "？", "﹖"])
HASH = st.sampled_from(["#", "#", "＃", "﹟"])
COLON = st.sampled_from([":", ":", "："])
NOISE = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n", "%20"])
HOSTS = st.sampled_from(
    [
        "host.example",
        "HOST.example:8443",
        "[::1]",
        "[::1]:8080",
        "[::1",
        "::1]",
        "[",
        "]",
        "host.example＃",
        "host.example？",
        "ho st",
        "xn--bcher-kva.example",
        "",
    ]
)
PATHS = st.sampled_from(["", "/", "/x.git", "/org/x.git", "/a b/x.git", "/x\n.git", "/p@th/x"])


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def secrets(draw: st.DrawFn) -> tuple[str, str]:
    """A secret, and how it is spelled in the URL."""
    secret = "Zq9" + draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=5))
    spelling = draw(st.sampled_from(["plain", "percent", "PERCENT", "fullwidth", "mixed"]))
    if spelling == "plain":
        return secret, secret
    if spelling in ("percent", "PERCENT"):
        form = "%{:02X}" if spelling == "PERCENT" else "%{:02x}"
        return secret, "".join(form.format(ord(c)) for c in secret)
    if spelling == "fullwidth":
        return secret, _fullwidth(secret)
    return secret, secret[:2] + _fullwidth(secret[2:4]) + f"%{ord(secret[4]):02X}" + secret[5:]


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str, str]:
    """(url, secret, its spelling): a secret as user, password, query value or fragment."""
    secret, spelled = draw(secrets())
    scheme = draw(
        st.sampled_from(["https", "http", "HTTPS", "ssh", "git", "git+ssh", "ftp", " https"])
    )
    place = draw(st.sampled_from(["password", "user", "query", "fragment", "many_at"]))
    if place == "user" and scheme in ("ssh", "git+ssh"):
        place = "password"  # ssh keeps the user name (`git@`); it is a login, no secret
    noise = [draw(NOISE) for _ in range(4)]
    userinfo = ""
    if place == "password":
        userinfo = f"u{draw(COLON)}{noise[0]}{spelled}{noise[1]}{draw(AT)}"
    elif place == "user":
        userinfo = f"{noise[0]}{spelled}{noise[1]}{draw(AT)}"
    elif place == "many_at":
        userinfo = f"u{draw(COLON)}{spelled}{draw(AT)}x{draw(AT)}{noise[0]}"
    elif draw(st.booleans()):
        userinfo = f"u{draw(COLON)}pw{draw(AT)}"
    url = f"{noise[2]}{scheme}://{userinfo}{draw(HOSTS)}{draw(PATHS)}{noise[3]}"
    if place == "query":
        key = draw(st.sampled_from(["private_token", "token", "access_token", "a=1&t"]))
        url += f"{draw(QUESTION)}{key}={spelled}"
    elif place == "fragment":
        url += f"{draw(HASH)}{spelled}"
    if draw(st.booleans()):
        url += f"{draw(QUESTION)}x=1{draw(HASH)}{spelled}"
    return url, secret, spelled


@st.composite
def scp_urls(draw: st.DrawFn) -> tuple[str, str, str]:
    """scp-like `user:secret@host:path`, with more '@'s and noise."""
    secret, spelled = draw(secrets())
    extra = draw(st.sampled_from(["", "@x", "@x@y", " ", "\n"]))
    host = draw(st.sampled_from(["host.example", "[::1", "h st", "[::1]"]))
    return f"u:{spelled}{extra}@{host}:org/r.git", secret, spelled


def _visible(text: str) -> list[str]:
    """The forms a secret could be read back from: as written, decoded, NFKC-folded."""
    decoded = unquote(text)
    return [text, decoded, unicodedata.normalize("NFKC", decoded)]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(urls(), scp_urls()))
def test_a_secret_never_survives_scrubbing_whatever_the_spelling(
    case: tuple[str, str, str],
) -> None:
    """Property: a secret placed as user info, password, query value or fragment, spelled
    plain, percent-encoded or full-width, behind ASCII or NFKC-variant separators, with
    unbalanced IPv6 brackets, spaces, newlines and several '@'s, appears in no readable
    form (as is, percent-decoded, NFKC-folded) of what `scrub_url` returns."""
    url, secret, spelled = case
    clean = scrub_url(url)
    for form in _visible(clean):
        assert secret not in form, (url, clean)
        assert spelled not in form, (url, clean)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("https://[::1/x.git?private_token=S3CRET", "https://[::1/x.git"),
        ("https://host.example＃/x.git?private_token=S3CRET", "https://host.example"),
        ("https://u:S3CRET＠host.example/x.git", "https://host.example/x.git"),
        ("https://host.example/x.git？private_token=S3CRET", "https://host.example/x.git"),
        ("ssh://git：S3CRET@host/x.git", "ssh://git@host/x.git"),
        ("https://u:S3CRET@x@host/x.git#S3CRET", "https://host/x.git"),
        ("git@host:a@b.git", "git@host:a@b.git"),
        ("u:S3CRET@x@host:r.git", "u@host:r.git"),
    ],
)
def test_urls_that_do_not_parse_are_scrubbed_too(raw: str, clean: str) -> None:
    """The red team's two remotes and their kin: the scrub does not need a parser."""
    assert scrub_url(raw) == clean
