"""Hostile answers from the Traces API (issue 10, 2.2): whatever a server answers, the client
returns typed outcomes (`check` its own errors; never anything else), a Retry-After hint is finite
and bounded, server text is printable; the daemon stays up, says what went wrong, and
delivers everything once the server answers well again.

The property tests serve hypothesis-drawn answers (status, headers, body) from a real
aiohttp server on 127.0.0.1 and, for what aiohttp refuses to send (control bytes, lying
framing, a broken status line), from a raw TCP server; the real BackendClient asks them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import unicodedata
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import Daemon, claude_session, sync_config, tracesd, wait_for
from tracesd.errors import BackendUnavailable, SyncError
from tracesd.sync.answers import ItemResult, batch_results, error_message, printable, retry_after
from tracesd.sync.backoff import RETRY_AFTER_MAX_S
from tracesd.sync.client import BackendClient, open_session
from tracesd.sync.wire import (
    KeyRefused,
    NoBatchEndpoint,
    NotNow,
    Outgoing,
    Refused,
    Stored,
    TooLarge,
)

SENT = ["t-1", "t-2", "t-3"]
ITEMS = [Outgoing.of({"externalId": i, "agentId": "claude-code"}) for i in SENT]

#: the three answers that killed the daemon (issue 10, 2.2)
SUPERSCRIPT_TWO = "\u00b2"
ZONE_OVERFLOW = "Wed, 21 Oct 2026 07:28:00 +99999999999999999999"

# ------------------------------------------------------------------------ strategies

_NUMBER_TEXT = st.one_of(
    st.integers(100, 599).map(str),
    st.integers().map(str),
    st.floats().map(json.dumps),  # NaN, Infinity, -Infinity among them
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "200.0",
            "2e2",
            "-200",
            "0",
            "true",
            "false",
            "null",
            '"200"',
            "[200]",
            "{}",
            "1" + "0" * 5000,
            "99999999999999999999999",
        ]
    ),
)
_STRING_TEXT = st.one_of(
    st.text(max_size=30).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"\\u001b[31mred\\u001b[0m"', '"\\ud800"', '"a\\u0000b\\r\\n"', '"\\u202e"']),
    st.just('"' + "x" * 200_000 + '"'),
)
_ANY_TEXT = st.one_of(_NUMBER_TEXT, _STRING_TEXT)
_ERROR_TEXT = st.one_of(
    st.builds(lambda c, m: f'{{"code":{c},"message":{m}}}', _ANY_TEXT, _ANY_TEXT),
    _ANY_TEXT,
)


@st.composite
def _batch_body(draw: st.DrawFn) -> bytes:
    """A batch answer that is right (its statuses aside) or almost right: each field may be
    missing or of any type, and the list may miss, repeat, add or reorder results."""
    honest = draw(st.booleans())
    results = []
    for sent in SENT:
        fields = {
            "externalId": json.dumps(sent)
            if honest
            else draw(st.one_of(st.just(json.dumps(sent)), _ANY_TEXT)),
            "status": draw(st.integers(100, 599).map(str) if honest else _NUMBER_TEXT),
            "error": draw(_ERROR_TEXT),
        }
        kept = [
            f'"{k}":{v}'
            for k, v in fields.items()
            if draw(st.integers(0, 3)) or (honest and k != "error")
        ]
        results.append("{" + ",".join(kept) + "}")
    if honest:
        text = f'{{"results":[{",".join(results)}]}}'
        if draw(st.booleans()):  # the envelope (issue 12), or the bare shape of before
            text = f'{{"ok":{draw(_ANY_TEXT)},"data":{text}}}'
        return text.encode("utf-8", "surrogatepass")
    shape = draw(
        st.sampled_from(["as is", "drop", "repeat", "extra", "reverse", "bare", "envelope"])
    )
    if shape == "drop":
        results.pop(draw(st.integers(0, len(results) - 1)))
    elif shape == "repeat":
        results.insert(0, results[-1])
    elif shape == "extra":
        results.append('{"externalId":"t-9","status":200}')
    elif shape == "reverse":
        results.reverse()
    listed = "[" + ",".join(results) + "]"
    text = listed if shape == "bare" else f'{{"results":{listed}}}'
    if shape == "envelope":  # data of any shape, beside or instead of the results
        text = (
            f'{{"ok":true,"data":{draw(st.one_of(_ANY_TEXT, st.just(text)))},"results":{listed}}}'
        )
    return text.encode("utf-8", "surrogatepass")


_BODIES = st.one_of(
    _batch_body(),
    st.binary(max_size=300),
    st.builds(lambda e: f'{{"error":{e}}}'.encode("utf-8", "surrogatepass"), _ERROR_TEXT),
    # the hosted API's error, with a retryAt of any kind (issue 12)
    st.builds(
        lambda c, m, r: (
            f'{{"ok":false,"error":{{"code":{c},"message":{m},"details":{{"retryAt":{r}}}}}}}'
        ).encode("utf-8", "surrogatepass"),
        _ANY_TEXT,
        _ANY_TEXT,
        _NUMBER_TEXT,
    ),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[" * 100_000,
            b'{"results":' * 50_000,
            b"\xff\xfe{\x00",
            b"\xef\xbb\xbf{}",
            b'{"results":NaN}',
            b"<html>maintenance</html>",
        ]
    ),
)
_HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, blacklist_categories=("Cc", "Cs")), max_size=40
)
_RETRY_AFTER = st.one_of(
    _HEADER_TEXT,
    st.integers().map(str),
    st.floats().map(str),
    st.builds(
        "Wed, 21 Oct 2026 07:28:00 {}".format,
        st.one_of(st.integers().map("{:+d}".format), _HEADER_TEXT),
    ),
    st.sampled_from(
        [
            SUPERSCRIPT_TWO,
            "\u0663",  # ARABIC-INDIC DIGIT THREE
            ZONE_OVERFLOW,
            "1e400",
            "-1",
            "NaN",
            "9" * 5000,
            "0" * 5000 + "5",
            " 7 ",
            "1.5",
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Wed, 31 Feb 2026 25:61:61 GMT",
            "Wed, 21 Oct 99999 07:28:00 GMT",
            "Wed, 21 Oct 0000 07:28:00 -2400",
            "Fri, 31 Dec 9999 23:59:59 -2359",
        ]
    ),
)
_CONTENT_TYPE = st.one_of(
    _HEADER_TEXT,
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "application/json; charset=nonsense",
            "text/html",
            ";;;",
            "application/json; charset",
        ]
    ),
)
_STATUSES = st.one_of(
    st.just(200),
    st.sampled_from(
        [200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 418, 425, 429, 500, 503]
    ),
    st.integers(200, 999),
)


def _short(data: bytes) -> str:
    return repr(data) if len(data) <= 200 else f"{data[:200]!r}... ({len(data)} bytes)"


class Served:
    """An answer for the aiohttp server (a plain class: hypothesis prints its repr)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def __repr__(self) -> str:  # a falsifying example stays readable
        headers = {k: v[:200] for k, v in self.headers.items()}
        return f"Served({self.status}, {headers!r}, {_short(self.body)})"


class Raw:
    """A whole answer in bytes, for the raw server."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Raw({_short(self.data)})"


@st.composite
def _served(draw: st.DrawFn) -> Served:
    headers = {}
    for name, values in (
        ("Retry-After", _RETRY_AFTER),
        ("Content-Type", _CONTENT_TYPE),
        ("Content-Length", st.integers(0, 400).map(str)),  # lies that aiohttp sends: _raw()
        ("Content-Encoding", st.sampled_from(["gzip", "br", "nonsense"])),
    ):
        if draw(st.integers(0, 3 if name == "Retry-After" else 8)) == 0 or (
            name == "Retry-After" and draw(st.booleans())
        ):
            headers[name] = draw(values)
    return Served(draw(_STATUSES), headers, draw(_BODIES))


@st.composite
def _raw(draw: st.DrawFn) -> Raw:
    """A whole HTTP answer as bytes: status line, header lines and framing may all lie."""
    status = draw(st.one_of(st.integers(0, 1200).map(str), _HEADER_TEXT))
    line = draw(st.one_of(st.just(f"HTTP/1.1 {status} X"), _HEADER_TEXT)).encode(
        "utf-8", "surrogatepass"
    )
    body = draw(_BODIES)
    header_lines = [
        name + b": " + value
        for name, value in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        [b"Retry-After", b"Content-Type", b"Content-Length", b"X-Any", b"Server"]
                    ),
                    st.one_of(st.binary(max_size=30), _RETRY_AFTER.map(str.encode)),
                ),
                max_size=5,
            )
        )
    ]
    if draw(st.booleans()):
        header_lines.append(b"Content-Length: %d" % len(body))
    return Raw(line + b"\r\n" + b"".join(h + b"\r\n" for h in header_lines) + b"\r\n" + body)


# ------------------------------------------------------------------------- the servers


class Hostile:
    """An aiohttp server answering whatever `served` says, a raw TCP server writing `raw`,
    and a client for each, on one event loop the (synchronous) test drives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.served = Served(200, {}, b"{}")
        self.raw = b""
        self.clients: dict[str, BackendClient] = {}

    def __repr__(self) -> str:
        return "Hostile()"

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        served = self.served
        response = web.Response(status=served.status, body=served.body, headers=served.headers)
        response.force_close()  # a lying Content-Length cannot poison the next answer
        return response

    async def answer_raw(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            writer.write(self.raw)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    loop = asyncio.new_event_loop()
    rig = Hostile(loop)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rig.answer)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    served_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    raw_server = loop.run_until_complete(asyncio.start_server(rig.answer_raw, "127.0.0.1", 0))
    raw_port = raw_server.sockets[0].getsockname()[1]

    async def make_session() -> aiohttp.ClientSession:
        return open_session(timeout=aiohttp.ClientTimeout(total=5))

    session = loop.run_until_complete(make_session())
    rig.clients = {
        "served": BackendClient(session, f"http://127.0.0.1:{served_port}", "sk-hostile"),
        "raw": BackendClient(session, f"http://127.0.0.1:{raw_port}", "sk-hostile"),
    }
    try:
        yield rig
    finally:
        loop.run_until_complete(session.close())
        raw_server.close()
        loop.run_until_complete(raw_server.wait_closed())
        loop.run_until_complete(runner.cleanup())
        loop.close()


# --------------------------------------------------------------------------- checking


def _is_printable(text: str) -> bool:
    return all(unicodedata.category(ch)[0] != "C" for ch in text)


def _check_outcome(outcome: object) -> None:
    """What the client (or the parser) may return or raise for any answer."""
    if isinstance(outcome, list) and all(isinstance(r, ItemResult) for r in outcome):
        assert [r.external_id for r in outcome] == SENT  # the parser: one result per id
    if isinstance(outcome, list):
        assert len(outcome) == len(SENT)  # one per trace sent, in order
        for result in outcome:
            _check_outcome(result)
    elif isinstance(outcome, ItemResult):
        assert outcome.external_id in SENT
        assert type(outcome.status) is int
        assert 100 <= outcome.status <= 999
        assert _is_printable(outcome.message)
    elif isinstance(outcome, Refused):
        assert type(outcome.status) is int
        assert 100 <= outcome.status <= 999
        assert _is_printable(outcome.message)
    elif isinstance(outcome, NotNow):
        assert _is_printable(outcome.message), outcome.message
        _check_hint(outcome.retry_after)
    elif isinstance(outcome, KeyRefused | TooLarge):
        assert _is_printable(outcome.message), outcome.message
    elif isinstance(outcome, SyncError):
        assert _is_printable(str(outcome)), str(outcome)
    else:
        assert isinstance(outcome, Stored | NoBatchEndpoint) or type(outcome) is int, outcome


def _check_hint(retry_after: float | None) -> None:
    if retry_after is not None:
        assert math.isfinite(retry_after)
        assert 0 <= retry_after <= RETRY_AFTER_MAX_S


async def _ask(client: BackendClient) -> list[object]:
    """Each request the client makes, against the same answer: the sends return an outcome
    and raise nothing; `check` (doctor's) returns the status or raises a SyncError. Any
    other exception fails."""
    outcomes: list[object] = [await client.send_batch(ITEMS), await client.put(ITEMS[0])]
    try:
        outcomes.append(await client.check())
    except SyncError as exc:
        outcomes.append(exc)
    for outcome in outcomes:
        event(type(outcome).__name__)  # --hypothesis-show-statistics: what was met
    return outcomes


_PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same answers on every machine
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,  # one server pair serves every example
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.timeout(300)
@_PROPERTY
@given(served=_served())
def test_no_answer_an_aiohttp_server_can_send_makes_the_client_raise_a_foreign_error(
    hostile: Hostile, served: Served
) -> None:
    hostile.served = served
    for outcome in hostile.run(_ask(hostile.clients["served"])):
        _check_outcome(outcome)


@pytest.mark.timeout(300)
@_PROPERTY
@given(raw=_raw())
def test_no_bytes_a_server_can_write_make_the_client_raise_a_foreign_error(
    hostile: Hostile, raw: Raw
) -> None:
    hostile.raw = raw.data
    for outcome in hostile.run(_ask(hostile.clients["raw"])):
        _check_outcome(outcome)


# ------------------------------------------------------------------ the parser alone


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(value=st.one_of(st.text(), _RETRY_AFTER))
def test_retry_after_is_a_bounded_finite_hint_or_none(value: str) -> None:
    hint = retry_after(value)
    assert hint is None or (math.isfinite(hint) and 0 <= hint <= RETRY_AFTER_MAX_S)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow],
)
@given(body=_BODIES)
def test_batch_results_and_error_text_parse_any_body_or_say_malformed(body: bytes) -> None:
    try:
        _check_outcome(batch_results(SENT, body))
    except BackendUnavailable as exc:
        _check_outcome(exc)
    assert _is_printable(error_message(body, 500))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SUPERSCRIPT_TWO, None),  # str.isdigit() says yes, float() says no
        ("\u0663", None),
        (ZONE_OVERFLOW, None),
        ("Wed, 21 Oct 2026 07:28:00 +2400", None),
        ("9" * 5000, RETRY_AFTER_MAX_S),
        ("-5", None),
        ("120", 120.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 100.0),
        ("Thu, 01 Jan 1970 01:01:40 +0100", 100.0),
    ],
)
def test_retry_after_forms(value: str, expected: float | None) -> None:
    assert retry_after(value, now=0.0) == expected


@pytest.mark.parametrize(
    "status", ["1e400", "-1e400", "NaN", "Infinity", "true", "200.0", "-200", "99", "600", '"200"']
)
def test_a_batch_status_that_is_not_an_http_status_is_a_malformed_answer(status: str) -> None:
    listed = ",".join(f'{{"externalId":"{i}","status":{status}}}' for i in SENT)
    body = f'{{"results":[{listed}]}}'
    with pytest.raises(BackendUnavailable, match="malformed"):
        batch_results(SENT, body.encode())


def test_server_text_is_made_printable_and_short() -> None:
    body = json.dumps({"error": {"code": "x\x1b[2J", "message": "\u202eevil\x07" * 1000}})
    text = error_message(body.encode(), 500)
    assert _is_printable(text)
    assert len(text) <= 300
    assert printable("a\tb\nc") == "a b c"


# ------------------------------------------------------------------- the real daemon


def _refuse_with_retry_after(value: str) -> Callable[[Plan], None]:
    def plan(p: Plan) -> None:
        p.fail_status, p.fail_until, p.retry_after = 429, float("inf"), value

    return plan


def _status_1e400(p: Plan) -> None:
    p.status_text = "1e400"


def _answer_well(p: Plan) -> None:
    p.fail_until, p.retry_after, p.status_text = 0.0, None, None


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "hostile_plan",
    [
        pytest.param(_refuse_with_retry_after(SUPERSCRIPT_TWO), id="retry-after-superscript-two"),
        pytest.param(_status_1e400, id="batch-status-1e400"),
        pytest.param(_refuse_with_retry_after(ZONE_OVERFLOW), id="http-date-zone-overflow"),
    ],
)
def test_the_daemon_outlives_an_answer_that_killed_it_and_delivers_everything_later(
    daemons: Callable[..., Daemon],
    home: Path,
    tmp_path: Path,
    fault: ThreadedFaultServer,
    hostile_plan: Callable[[Plan], None],
) -> None:
    (home / ".claude" / "projects").mkdir(parents=True)
    env = sync_config(home, fault.url)
    fault.call(hostile_plan, fault.server.plan)
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    ids = [claude_session(home, tmp_path, f"prompt {i}")[0] for i in range(3)]
    for session_id in ids:
        daemon.row(session_id)
    # Several answers in a row, each one backed off from: the daemon stays up.
    wait_for(lambda: len(daemon.events("sync.backoff")) >= 3 or daemon.proc.poll() is not None)
    assert daemon.proc.poll() is None, daemon.log_path.read_text()

    status = tracesd(home, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    sync = json.loads(status.stdout)["sync"]
    assert sync["last_error"]
    assert sync["consecutive_failures"] >= 1
    assert sync["pending"] == 3
    shown = tracesd(home, "status", env=env)
    assert shown.returncode == 0
    assert "last error" in shown.stdout
    # An explicit run (POST /sync on the socket) meets the same answer and survives it.
    forced = tracesd(home, "sync", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["pending"] == 3
    assert daemon.proc.poll() is None

    fault.call(_answer_well, fault.server.plan)
    wait_for(lambda: set(ids) <= set(fault.server.stored), timeout=30)
    wait_for(
        lambda: (
            json.loads(tracesd(home, "status", "--json", env=env).stdout)["sync"]["last_error"]
            is None
        )
    )
    assert not daemon.events("sync.crashed")
    assert not daemon.events("sync.client_error")
    assert daemon.stop() == 0
