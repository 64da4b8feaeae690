"""The v2 message and part ids (tracesd.messages.ids): the rules the real CLI applies
that its fixture sessions do not reach (tests/test_traces_cli_fields.py checks the rest
against the CLI itself)."""

from __future__ import annotations

import uuid

import pytest

from tracesd.messages import ids


@pytest.mark.parametrize(
    ("trace_id", "used_as_is"),
    [
        ("5126cc79-0530-49c0-8488-d023f1287d0d", True),  # version 4
        ("5126CC79-0530-49C0-8488-D023F1287D0D", True),  # any case
        ("3f357dc7-b1a3-5eb5-9d5e-1e18a1613f5f", True),  # version 5 (the CLI's subagent ids)
        ("00000000-0000-0000-0000-000000000000", True),  # nil
        ("5126cc79-0530-09c0-8488-d023f1287d0d", False),  # version 0 is no UUID to the CLI
        ("5126cc79-0530-49c0-c488-d023f1287d0d", False),  # nor another variant
        ("5126cc79053049c08488d023f1287d0d", False),  # nor the form without hyphens
        ("5126cc79-0530-49c0-8488-d023f1287d0d\n", False),  # nor a trailing newline
        ("T-5126cc79-0530-49c0-8488-d023f1287d0d", False),  # Amp's thread ids
    ],
)
def test_a_trace_id_is_the_namespace_only_when_the_cli_takes_it_for_a_uuid(
    trace_id: str, used_as_is: bool
) -> None:
    hashed = uuid.uuid5(uuid.NAMESPACE_URL, trace_id)
    expected = uuid.UUID(trace_id) if used_as_is else hashed
    assert ids.namespace(trace_id) == expected


def test_a_source_key_is_the_native_id_or_else_the_index_of_its_kind() -> None:
    assert ids.source_key("user", " 7c1e9a52 ", 3) == "user:7c1e9a52"
    assert ids.source_key("text", None, 0) == "text:0"
    assert ids.source_key("text", "  ", 2) == "text:2"


def test_ids_need_a_trace_and_a_key() -> None:
    with pytest.raises(ValueError, match="trace id is required"):
        ids.message_id(" ", "user:1")
    with pytest.raises(ValueError, match="message source key is required"):
        ids.message_id("t", " ")
    with pytest.raises(ValueError, match="part source key is required"):
        ids.part_id("t", "m", "")


def test_keys_are_trimmed_as_the_cli_trims_them() -> None:
    assert ids.message_id("t", " user:1 ") == ids.message_id("t", "user:1")


def test_keys_are_trimmed_of_javascripts_white_space_not_pythons() -> None:
    # JavaScript's trim removes a BOM and leaves \x1c-\x1f and \x85, which Python's strip removes
    assert ids.source_key("user", "\ufeffa1\u3000", 0) == "user:a1"
    assert ids.source_key("user", "\x1ca1\x85", 0) == "user:\x1ca1\x85"
    assert ids.source_key("text", "\ufeff", 4) == "text:4"
    assert ids.message_id("t", "\ufeffuser:1") == ids.message_id("t", "user:1")
    assert ids.message_id("t", "user:1\x1f") != ids.message_id("t", "user:1")
    with pytest.raises(ValueError, match="part source key is required"):
        ids.part_id("t", "m", "\ufeff")
