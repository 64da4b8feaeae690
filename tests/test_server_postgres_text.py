"""The escape that lets PostgreSQL's text hold U+0000 (postgres_text): pure properties."""

from __future__ import annotations

from itertools import product

from hypothesis import given
from hypothesis import strategies as st

from tracesd.server.postgres_text import ESCAPE, NUL, decode, encode

#: strings of the characters the escape is about (and a few beside them), or of any
TEXTS = st.text(st.sampled_from([NUL, ESCAPE, "0", "\\", "a"])) | st.text()


@given(TEXTS)
def test_decode_gives_back_every_string_encode_was_given(text: str) -> None:
    assert decode(encode(text)) == text


@given(TEXTS)
def test_an_encoded_string_holds_no_nul(text: str) -> None:
    assert NUL not in encode(text)


def test_no_two_strings_encode_alike() -> None:
    """Injective, checked on every string of up to 5 of the escape's characters (those a
    flawed escape confuses): a filter comparing encoded forms finds only equal strings."""
    texts = [
        "".join(chars) for n in range(6) for chars in product([NUL, ESCAPE, "0", "a"], repeat=n)
    ]
    assert len({encode(text) for text in texts}) == len(texts)


@given(st.text(st.characters(blacklist_characters=[NUL, ESCAPE])))
def test_a_string_without_nul_or_the_escape_is_stored_as_it_is(text: str) -> None:
    assert encode(text) == text


def test_the_escape_and_nul_have_codes_of_their_own() -> None:
    assert encode(f"a{NUL}{ESCAPE}0{ESCAPE}") == f"a{ESCAPE}0{ESCAPE}{ESCAPE}0{ESCAPE}{ESCAPE}"
    assert decode(f"{ESCAPE}{ESCAPE}0") == f"{ESCAPE}0"
    assert decode(f"lone {ESCAPE}x") == f"lone {ESCAPE}x"
