"""One repository identity (INTERFACE section 5): every remote form to one canonical URL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_redact import _visible, scp_urls, secrets, urls
from tracesd.git.remote_url import canonical, canonical_or_none


@pytest.mark.parametrize(
    ("remote", "cli", "ours"),
    [
        # docs/traces-cli-0.6.31.md (c): what the real CLI stores, and what we store
        ("git@github.com:Org/X.git", "https://github.com/Org/X", "https://github.com/Org/X"),
        ("git@GitHub.com:Org/X.git", "https://GitHub.com/Org/X", "https://github.com/Org/X"),
        (
            "ssh://git@github.com:2222/Org/Y.git/",
            "https://github.com/Org/Y.git",
            "https://github.com/Org/Y",
        ),
        (
            "https://user:secret@Example.COM:8443/Org/Z.git?x=1#f",
            "https://example.com:8443/Org/Z",
            "https://example.com:8443/Org/Z",
        ),
        (
            "https://github.com/Org/W.git/",
            "https://github.com/Org/W.git",
            "https://github.com/Org/W",
        ),
        ("/srv/git/repo.git", None, "/srv/git/repo.git"),
    ],
)
def test_the_cli_observed_forms_without_its_quirks(remote: str, cli: str | None, ours: str) -> None:
    """Where the CLI is right we agree with it; its quirks (`.git/` kept, host case kept in
    ssh and scp forms, no answer for a local path) are deliberately not copied."""
    assert canonical(remote) == ours
    if cli is not None:
        assert canonical(cli) == ours  # what the CLI stored canonicalises to ours too


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@host:o/r.git", "https://host/o/r"),
        ("git@host:/o/r.git", "https://host/o/r"),
        ("host:o/r", "https://host/o/r"),
        ("u:pw@HOST:o/r.git", "https://host/o/r"),
        ("git@[::1]:o/r.git", "https://[::1]/o/r"),
        ("ssh://git@host:22/o/r.git/", "https://host/o/r"),
        ("ssh://Host/o/r", "https://host/o/r"),
        ("git+ssh://git@host/o/r.git", "https://host/o/r"),
        ("ssh+git://git@host/o/r.git", "https://host/o/r"),
        ("ssh://git:hunter2@[::1]:2222/o/r.git", "https://[::1]/o/r"),
        ("https://u:p@HOST/o/r.git/?q#f", "https://host/o/r"),
        ("HTTPS://Host/o/r", "https://host/o/r"),
        ("http://host:8080/o/r.git", "http://host:8080/o/r"),
        ("https://ghp_token@host/o/r.git", "https://host/o/r"),
        ("https://host/o/r.git.git//", "https://host/o/r"),
        ("https://host/o/r/.git", "https://host/o/r"),
        ("https://host/", "https://host"),
        ("  https://host/o/r.git \n", "https://host/o/r"),
        ("https://[::1]:8443/o/r.git", "https://[::1]:8443/o/r"),
        ("https://host/o/r.GIT", "https://host/o/r.GIT"),
        # anything else: kept as given, minus credentials
        ("/srv/git/repo.git/", "/srv/git/repo.git/"),
        ("./relative/repo", "./relative/repo"),
        ("~/repo.git", "~/repo.git"),
        ("file:///srv/Repo.git", "file:///srv/Repo.git"),
        ("file://u:secret@host/srv/r.git", "file://host/srv/r.git"),
        ("git://Host/o/r.git", "git://Host/o/r.git"),
        ("git://u:secret@Host/o/r.git", "git://Host/o/r.git"),
    ],
)
def test_each_form_has_its_canonical_url(remote: str, expected: str) -> None:
    assert canonical(remote) == expected


def test_none_and_blank_are_no_url() -> None:
    assert canonical_or_none(None) is None
    assert canonical_or_none("  \n") is None
    assert canonical_or_none("git@host:o/r.git") == "https://host/o/r"


SEPARATORS = "/:@?#.[] \n\t%~＠？＃／：﹫﹖﹟"
PIECES = st.sampled_from(
    ["ssh://", "https://", "HTTP://", "git+ssh://", "file://", "git@", "u:pw@", ".git", "/",
     ":22", "HOST", "[::1]", "o/r"]
)  # fmt: skip
TEXTS = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list(SEPARATORS) + list("aZgit0"))),
    st.lists(st.one_of(PIECES, st.text(SEPARATORS + "aZ", max_size=3)), max_size=8).map("".join),
)


@settings(max_examples=3000, deadline=None)
@given(TEXTS)
def test_canonical_is_idempotent_for_any_text(text: str) -> None:
    """Property: canonicalising a canonical URL changes nothing, whatever the input was
    (separators in their NFKC look-alikes, brackets, blanks, several '@'s included)."""
    once = canonical(text)
    assert canonical(once) == once, (text, once)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(urls(), scp_urls()))
def test_canonical_is_idempotent_for_urls_with_secrets(case: tuple[str, str, str]) -> None:
    once = canonical(case[0])
    assert canonical(once) == once, (case[0], once)


@st.composite
def ssh_logins(draw: st.DrawFn) -> tuple[str, str, str]:
    """An ssh or scp remote whose login name is the secret (scrub_url keeps ssh logins;
    the canonical form drops them)."""
    secret, spelled = draw(secrets())
    form = draw(st.sampled_from(["ssh://{u}@host/o/r.git", "ssh://{u}@host:22/o", "{u}@host:o"]))
    return form.format(u=spelled), secret, spelled


@settings(max_examples=3000, deadline=None)
@given(st.one_of(urls(), scp_urls(), ssh_logins()))
def test_a_credential_in_the_input_never_reaches_the_canonical_url(
    case: tuple[str, str, str],
) -> None:
    """Property: a secret placed as user, password, query or fragment (test_redact's
    generators: plain, percent-encoded, full-width, behind look-alike separators), or as an
    ssh login, appears in no readable form of the canonical URL."""
    url, secret, spelled = case
    out = canonical(url)
    for form in _visible(out):
        assert secret not in form, (url, out)
        assert spelled not in form, (url, out)


NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
HOSTNAMES = st.lists(st.text("abcdefXYZ0189-", min_size=1, max_size=8), min_size=1, max_size=3)


@settings(max_examples=1000, deadline=None)
@given(
    HOSTNAMES.map(".".join),
    NAMES,
    NAMES,
    st.sampled_from(["git", "u", "deploy"]),
    st.sampled_from(["", ":22", ":2222"]),
    st.sampled_from(["", ".git", "/", ".git/"]),
    st.sampled_from(["", "?q=1", "#f", "?q#f"]),
)
def test_the_usual_forms_of_one_repository_are_one_url(
    host: str, owner: str, name: str, user: str, port: str, suffix: str, query: str
) -> None:
    """Property: scp, ssh:// and https:// (with credentials, query, fragment, `.git`,
    trailing `/`, any host case) of one repository give the same canonical URL."""
    expected = f"https://{host.lower()}/{owner}/{name}"
    forms = [
        f"{user}@{host}:{owner}/{name}{suffix}",
        f"{user}@{host.upper()}:/{owner}/{name}{suffix}",
        f"ssh://{user}@{host}{port}/{owner}/{name}{suffix}",
        f"SSH://{host.upper()}/{owner}/{name}{suffix}",
        f"https://{user}:p4ss@{host.upper()}/{owner}/{name}{suffix}{query}",
        f"https://{host}/{owner}/{name}{suffix}",
    ]
    assert {canonical(f) for f in forms} == {expected}, forms
