"""The JavaScript value semantics the ported CLI readers rely on (readers/_js.py): each
expected text here is what Bun (the runtime of the real CLI binary) gives for the input."""

from __future__ import annotations

import math

import pytest

from tracesd.messages.readers import _js


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (123456789012345680000.0, "123456789012345680000"),
        (1e21, "1e+21"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (-1.5e-10, "-1.5e-10"),
        (2.0**53 + 2, "9007199254740994"),
        (3.141471703767915e18, "3141471703767915000"),
        (0.1, "0.1"),
        (-0.0, "0"),
    ],
)
def test_numbers_print_as_javascript_prints_them(value: float, text: str) -> None:
    assert _js.number_text(value) == text


def test_json_numbers_read_as_doubles_and_print_as_javascript_prints_them() -> None:
    assert _js.parse_json("[12345678901234567891, 1.0, 2.5e3, 1e21]") == [
        12345678901234567000,
        1,
        2500,
        1e21,
    ]
    with pytest.raises(_js.NotJson):
        _js.parse_json("[NaN]")


def test_stringify_orders_index_keys_first_and_escapes_lone_surrogates() -> None:
    value = {"b": 1, "10": 2, "2": 3, "01": 4, "x": "\ud800\n"}
    assert _js.stringify(value) == '{"2":3,"10":2,"b":1,"01":4,"x":"\\ud800\\n"}'
    nested = {"a": [1, {}], "b": []}
    assert _js.stringify(nested, 2) == '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": []\n}'
    assert _js.string([1, None, "a"]) == "1,,a"
    assert _js.string({}) == "[object Object]"


@pytest.mark.parametrize(
    ("value", "text"), [(0.25, "0.3"), (0.35, "0.3"), (1.45, "1.4"), (256 / 1024, "0.3")]
)
def test_to_fixed_rounds_a_tie_up_on_the_exact_double(value: float, text: str) -> None:
    assert _js.to_fixed(value, 1) == text


@pytest.mark.parametrize(
    ("text", "number"),
    [(" 0x1F ", 31.0), ("", 0.0), ("5.", 5.0), ("\u00a012\u00a0", 12.0), ("1_000", math.nan)],
)
def test_number_of_a_text_is_javascripts(text: str, number: float) -> None:
    got = _js.to_number(text)
    assert got == number or (math.isnan(got) and math.isnan(number))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-20 09:55:21Z", 1795168521000),
        ("Thu, 20 Nov 2026 09:55:21 GMT", 1795168521000),
        ("2026-11-20T09:55:21.123456Z", 1795168521123),
        ("2026-11-20T09:55:21+0200", 1795161321000),
        ("2026-11", 1793491200000),
        ("2026-11-20T24:00:00Z", 1795219200000),
        ("2026-11-20t09:55:21z", 1795168521000),
        ("2026-11-31T00:00:00Z", 1796083200000),
    ],
)
def test_date_parse_reads_the_forms_bun_reads(text: str, ms: int) -> None:
    assert _js.date_parse(text) == ms


@pytest.mark.parametrize("text", ["2026-11-32T00:00:00Z", "2026-13-01T00:00:00Z", "soon"])
def test_date_parse_of_no_date_is_nan(text: str) -> None:
    assert _js.date_parse(text) is None
