"""The CLI's event -> batch entry mapping, its naming rule and its secret scrubbing, at the
edges the fixture and crafted sessions (checked against the real CLI elsewhere) rarely reach."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracesd.messages import identity, ids, scrub
from tracesd.messages.event import MAX_EVENT_BYTES, OVERSIZED, Event, as_message, bounded


def event(kind: str = "user_message", order: int = 1, **fields: object) -> Event:
    base: dict[str, object] = {"message_key": "user:u1", "part_key": "text:0"}
    base.update(fields)
    return Event(kind=kind, order=order, timestamp=1795165800118, **base)  # type: ignore[arg-type]


def test_an_event_past_the_clis_size_limit_has_its_content_replaced() -> None:
    big = "x" * (MAX_EVENT_BYTES + 1)
    assert bounded(event(content=big)).content == OVERSIZED
    assert bounded(event("tool_call", call_id="c", tool_name="Read", args={"a": big})).args == {
        "note": OVERSIZED
    }
    assert bounded(event("tool_result", call_id="c", output=big)).output == OVERSIZED
    fallback = bounded(event("system_event", subtype="x", data={"a": big}))
    assert (fallback.kind, fallback.message, fallback.order) == ("error", OVERSIZED, 1)
    small = event(content="fits")
    assert bounded(small) is small


def test_an_entry_leaves_out_what_the_cli_leaves_undefined_and_encodes_odd_keys() -> None:
    entry = as_message(
        "claude-code",
        event(
            "tool_call",
            call_id="toolu_1",
            tool_name="Edit",
            args={"päth": 1, "p%C3%A4th": 2, "plain": None},
            token_usage={"inputTokenCount": 3, "outputTokenCount": None},
        ),
        "m",
        "p",
    )
    assert entry == {
        "externalId": "m",
        "sourceKey": "user:u1",
        "role": "assistant",
        "order": 1,
        "timestamp": 1795165800118,
        "tokenUsage": {"inputTokenCount": 3},
        "parts": [
            {
                "externalId": "p",
                "sourceKey": "text:0",
                "type": "tool_call",
                "content": {
                    "callId": "toolu_1",
                    "toolName": "Edit",
                    "args": {"p%C3%A4th": 1, "p%C3%A4th__1": 2, "plain": None},
                },
                "tokenUsage": {"inputTokenCount": 3},
            }
        ],
    }
    no_usage = as_message("claude-code", event(content="hi", token_usage={"x": 1}), "m", "p")
    assert "tokenUsage" not in no_usage
    opencode = as_message(
        "opencode", event(content="hi", token_usage={"outputTokenCount": 1}), "m", "p"
    )
    assert "tokenUsage" not in opencode
    assert opencode["parts"][0]["tokenUsage"] == {"outputTokenCount": 1}


def test_events_under_the_same_keys_collapse_or_get_numbered_as_the_cli_names_them() -> None:
    trace = "5126cc79-0530-49c0-8488-d023f1287d0d"
    first = identity.name(trace, event(order=1, content="a"), [])
    known = [identity.Known(first.event.part_key, event(order=1, content="a").signature(), 1)]
    same = identity.name(trace, event(order=2, content="a"), known)
    other = identity.name(trace, event(order=3, content="b"), known)
    again = identity.name(trace, event(order=1, content="a, edited"), known)
    assert (first.verdict, first.event.part_key) == ("new", "text:0")
    assert (same.verdict, same.part_id) == ("collapsed", first.part_id)
    assert (other.verdict, other.event.part_key) == ("new", "text:0#1")
    assert other.part_id == ids.part_id(trace, first.message_id, "text:0#1")
    assert (again.verdict, again.part_id) == ("again", first.part_id)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("key AKIAABCDEFGHIJKLMNOP here", "key [REDACTED] here"),
        ("ghp_" + "a" * 36, "[REDACTED]"),
        ("sk-ant-" + "b" * 24, "[REDACTED]"),
        ("sk-" + "c" * 24, "[REDACTED]"),
        ("trk_" + "d" * 32, "[REDACTED]"),
        ("mail bob@example.com now", "mail [REDACTED] now"),
        ("see https://x.org/a@b.cd", "see https://x.org/a@b.cd"),
        ("postgres://u:p@db.internal:5432/app", "[REDACTED]"),
        ("export API_TOKEN=abc123 next", "export API_TOKEN=[REDACTED] next"),
        ("Authorization: Bearer aaa.bbb.ccc", "Authorization: Bearer [REDACTED]"),
        ("A_URL=x\nB_HOST=y\nrest", "\n[REDACTED_ENV_BLOCK]rest"),
        ("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----", "[REDACTED]"),
        ("nothing secret: sk-short, a@b", "nothing secret: sk-short, a@b"),
    ],
)
def test_secrets_are_scrubbed_as_the_cli_scrubs_them(text: str, scrubbed: str) -> None:
    assert scrub.text(text) == scrubbed


def test_scrubbing_reaches_every_string_of_an_entry_but_no_key() -> None:
    secret = "sk-ant-" + "z" * 30
    entry = as_message(
        "claude-code",
        event("tool_call", call_id="c", tool_name="Bash", args={secret: [f"echo {secret}"]}),
        "m",
        "p",
    )
    assert entry["parts"][0]["content"]["args"] == {secret: ["echo [REDACTED]"]}


_PIECES = st.sampled_from(
    [
        "A_URL=x",
        "B_HOST=y\n",
        "\n",
        " ",
        "=",
        "@",
        "bob@example.com",
        "://",
        "postgres://u:p@h/db",
        "db_password=",
        "Token",
        "MY_SECRET",
        "_KEY",
        "prod:",
        "session_",
        "sk-",
        "ghp_",
        "x",
        "Ü",
        "K",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=12).map("".join))
def test_the_cheap_skips_never_change_what_is_scrubbed(text: str) -> None:
    """scrub.text skips a pattern when the text lacks what the pattern needs: the result is
    always what applying every pattern gives."""
    every = text
    for pattern, replacement in scrub._PATTERNS:
        every = pattern.sub(replacement, every)
    assert scrub.text(text) == every
