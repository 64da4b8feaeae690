"""`tracesd server` against hostile clients: real processes, real sockets on loopback.

Slow clients (trickled headers, silence, a body that stops), more connections than the
process has descriptors, malformed requests that carry a token, garbage bodies: the
server answers or closes within its bounds, keeps serving others, and its log holds one
line per overload episode, no traceback, and never a request's credentials.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import isolated_env
from tracesd import logs
from tracesd.server.secrecy import MASK, masking

TOKEN = "tok-6f1d2a9c-valid"
#: a credential the server does not know: no masking can hide it, only not logging it
STRANGER = "tok-b7e3-not-configured"
COOKIE = "session-4c2e8a"


class Server:
    """A real `tracesd server` (JSON logs, stdout and stderr in one file), optionally with a
    lowered descriptor limit."""

    def __init__(self, tmp: Path, nofile: int | None, env: dict[str, str]) -> None:
        self.log_path = tmp / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracesd", "server", "--log-format", "json", "--port", "0"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: _limit_files(nofile)) if nofile else None,
        )
        self.port = 0
        self.port = int(self.wait_for("server.started")[0]["port"])

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found

    def wait_for(self, name: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.events(name):
                return found
            assert self.proc.poll() is None, self.text()[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"no {name} in {timeout}s:\n{self.text()[-3000:]}")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock

    def request(self, raw: bytes, timeout: float = 10.0) -> bytes:
        """Send `raw` on a new connection; everything the server answers until it closes."""
        with self.connect(timeout) as sock:
            sock.sendall(raw)
            return _read_all(sock)

    def get(self, path: str = "/v1/traces", timeout: float = 10.0) -> int:
        raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        answer = self.request((raw + "Connection: close\r\n\r\n").encode(), timeout)
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def _limit_files(nofile: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _closed_within(sock: socket.socket, seconds: float, *, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (sending `trickle` every 0.2 s); None if not."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if trickle:
                sock.send(trickle)
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed by the server
            return time.monotonic() - start
    return None


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(home: Path, tmp_path: Path) -> Iterator[StartServer]:
    started: list[Server] = []

    def start(nofile: int | None = None, **env: str) -> Server:
        environment = isolated_env(home, TRACESD_SERVER_TOKENS=TOKEN, **env)
        server = Server(tmp_path, nofile, environment)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _no_traceback_or_secret(text: str) -> None:
    assert "Traceback" not in text
    assert '"exception"' not in text  # a structured traceback
    assert "server.internal_error" not in text
    for secret in (TOKEN, STRANGER, COOKIE):
        assert secret not in text, secret


# -------------------------------------------------------------------------- time bounds


def test_a_client_trickling_its_headers_is_cut_within_the_header_bound_while_others_are_served(
    start_server: StartServer,
) -> None:
    """One header byte every 0.2 s: closed at the header bound (1 s here, idle bound 60 s)
    while a normal client is answered at once."""
    server = start_server(TRACESD_SERVER_HEADER_TIMEOUT_S="1", TRACESD_SERVER_IDLE_TIMEOUT_S="60")
    tricklers = [server.connect() for _ in range(3)]
    for sock in tricklers:
        sock.sendall(b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert server.get() == 200
    for sock in tricklers:
        closed = _closed_within(sock, 15, trickle=b"a")
        assert closed is not None, "a trickling client was never cut"
        sock.close()
    assert server.get() == 200
    _no_traceback_or_secret(server.text())


def test_a_silent_connection_is_closed_after_the_idle_bound(start_server: StartServer) -> None:
    """Connected and silent, or silent after an answer (keep-alive): closed at the idle bound."""
    server = start_server(TRACESD_SERVER_IDLE_TIMEOUT_S="1")
    with server.connect() as silent, server.connect() as kept:
        kept.sendall(
            f"GET /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        assert kept.recv(12) == b"HTTP/1.1 200"
        assert _closed_within(silent, 15) is not None
        assert _closed_within(kept, 15) is not None


def test_a_body_that_stops_arriving_is_answered_408_and_closed_at_the_body_bound(
    start_server: StartServer,
) -> None:
    """Content-Length 100, one byte sent: 408 with the error body, then the server closes."""
    server = start_server(TRACESD_SERVER_BODY_TIMEOUT_S="1")
    head = (
        f"PUT /v1/traces/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    answer = server.request(head.encode(), timeout=30)
    assert time.monotonic() - started < 20
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert (body["ok"], body["error"]["code"]) == (False, "timeout")
    assert server.get("/v1/traces/t1") == 404  # nothing stored


def test_a_bad_time_bound_in_the_environment_refuses_to_start(home: Path) -> None:
    """nan, negative or not a number: exit 2 naming the variable."""
    for value in ("nan", "-1", "soon", "inf"):
        env = isolated_env(home, TRACESD_SERVER_TOKENS=TOKEN, TRACESD_SERVER_HEADER_TIMEOUT_S=value)
        result = subprocess.run(
            [sys.executable, "-m", "tracesd", "server", "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (value, result.stderr)
        assert "TRACESD_SERVER_HEADER_TIMEOUT_S" in result.stderr


# ------------------------------------------------------------- more clients than files

NOFILE = 128


def _flood(server: Server, count: int) -> list[socket.socket]:
    """Up to `count` connections, each sending half a request line and then nothing; stops
    at the first that cannot connect within 2 s (the server's accept queue stays full)."""
    socks: list[socket.socket] = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        except TimeoutError:
            break
        socks.append(sock)
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /v1/tr")
    return socks


def test_with_more_clients_than_descriptors_a_new_client_is_still_served(
    start_server: StartServer,
) -> None:
    """RLIMIT_NOFILE 128, 200 stalled connections: the cap (below the limit) closes the
    longest idle for each newcomer, so a fresh client is answered at once; the overload is
    one log line when it starts and one with counts when it ends."""
    server = start_server(nofile=NOFILE)
    flood = _flood(server, 200)
    try:
        for _ in range(3):
            assert server.get(timeout=10) == 200
        assert len(server.wait_for("server.connections_full")) == 1
    finally:
        for sock in flood:
            sock.close()
    (ended,) = server.wait_for("server.connections_full_ended")
    assert ended["evicted"] > 0
    assert server.events("server.started")[0]["max_connections"] < NOFILE
    assert not server.events("server.accept_failed")  # the cap keeps accept() working
    assert server.get() == 200
    text = server.text()
    assert "Too many open files" not in text
    assert len(text) < 20_000, f"{len(text)} bytes of log"
    _no_traceback_or_secret(text)


def test_accept_failing_for_want_of_descriptors_is_logged_once_and_the_server_recovers(
    start_server: StartServer,
) -> None:
    """RLIMIT_NOFILE 64 and a cap set above it: accept() fails (EMFILE). One
    `server.accept_failed` line for the episode, not one per attempt; once the stalled
    clients are cut (header and idle bounds) a new client is served and the episode's end
    is logged with its count."""
    server = start_server(
        nofile=64,
        TRACESD_SERVER_MAX_CONNECTIONS="10000",
        TRACESD_SERVER_HEADER_TIMEOUT_S="6",
        TRACESD_SERVER_IDLE_TIMEOUT_S="6",
    )
    flood = _flood(server, 300)
    try:
        (failed,) = server.wait_for("server.accept_failed")
        assert failed["first"] == "EMFILE"
        time.sleep(3)  # asyncio retries accept() every second, each time failing again
        deadline = time.monotonic() + 60
        while server.get(timeout=5) != 200:
            assert time.monotonic() < deadline, "the server did not recover"
    finally:
        for sock in flood:
            sock.close()
    ended = server.wait_for("server.accept_failed_ended")
    time.sleep(0.5)
    started = server.events("server.accept_failed")
    assert len(started) == len(server.events("server.accept_failed_ended")) <= 3
    # asyncio retried accept() every second until the stalled clients were cut at 6 s
    assert sum(e["EMFILE"] for e in ended) >= 3 > len(started)
    text = server.text()
    assert "Too many open files" not in text
    assert len(text) < 20_000, f"{len(text)} bytes of log"
    _no_traceback_or_secret(text)


# --------------------------------------------------------------------- credentials


def _auth(value: bytes) -> bytes:
    return b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n\r\n"


_T = TOKEN.encode()
_S = STRANGER.encode()
MALFORMED = [
    *(
        _auth(b"Bearer " + secret + bad)
        for secret in (_T, _S)
        for bad in (b"\x00", b"\x01", b"\x7f", b"\r", b"\rx")
    ),
    _auth(b"Bearer " + _T + b"x" * 9000),  # over max_field_size
    b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nCookie: s=" + COOKIE.encode() + b"\x01\r\n\r\n",
    b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization\x01: Bearer " + _T + b"\r\n\r\n",
    b"GET /v1/traces?token=" + _T + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",  # bad request line
    b"GET /v1/traces?token=" + _S + b" HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /" + _T + b"/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # overlong line
    b"G\x01T /?t=" + _T + b" HTTP/1.1\r\n\r\n",  # bad method
    b"GET /v1/traces?token=" + _T + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/traces/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + _S + b"\r\n\r\n",
    (
        b"PUT /v1/traces/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + _T + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz" + _T + b"\r\n"
    ),
    (
        b"PUT /v1/traces/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + _T + b"\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 20\r\n\r\n" + _T[:20]
    ),
]


def test_no_malformed_request_puts_a_credential_into_the_log(start_server: StartServer) -> None:
    """A valid token, an unknown one or a cookie followed by NUL, ^A, DEL or a lone CR; an
    overlong header; a bad request line or a URL query with a token: every one is answered
    (4xx, the error body) or closed, and the whole log holds none of the secrets."""
    server = start_server(TRACESD_SERVER_HEADER_TIMEOUT_S="2", TRACESD_SERVER_IDLE_TIMEOUT_S="1")
    for raw in MALFORMED:
        answer = server.request(raw, timeout=20)
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status < 500, answer[:300]
            if status >= 400:
                body = json.loads(answer.partition(b"\r\n\r\n")[2])
                assert set(body["error"]) == {"code", "message"}
                assert body["ok"] is False
            assert _T not in answer.partition(b"\r\n\r\n")[2]
    assert server.get() == 200
    server.stop()
    assert server.events("server.bad_request")
    _no_traceback_or_secret(server.text())


# ------------------------------------------------------------------------ garbage


_ENDPOINTS = [
    ("PUT", "/v1/traces/t1"),
    ("GET", "/v1/traces/t1"),
    ("POST", "/v1/traces/batch"),
    ("GET", "/v1/traces"),
    ("POST", "/v1/traces/t1/messages/batch"),
    ("PUT", "/v1/traces/t1/messages/m1"),
]
_JSON_TEXT = st.recursive(
    st.sampled_from(
        ["null", "1", "1e400", "-1e999", "NaN", "Infinity", "9" * 30, '"x"', '"\\ud800"']
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(
            st.tuples(st.sampled_from(['"traces"', '"agentId"', '"a"']), inner), max_size=3
        ).map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    ),
    max_leaves=12,
).map(str.encode)
_BODIES = st.one_of(
    st.binary(max_size=300),
    _JSON_TEXT,
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 200_000).map(lambda n: b'{"traces": ' + b"[" * n),
    st.sampled_from([b"\xef\xbb\xbf{}", '{"agentId": "x"}'.encode("utf-16"), b'{"a":1,"a":2}']),
)
_ENCODINGS = st.sampled_from([None, "gzip", "deflate", "br", "identity", "x-unknown"])


def test_garbage_bodies_never_get_a_5xx_or_a_traceback(start_server: StartServer) -> None:
    """Hypothesis: garbage bytes, nonsense JSON (deep, huge numbers, NaN, duplicate keys,
    UTF-16, a BOM) with any Content-Encoding, against every endpoint: always an answer
    below 500 with the error body, and no traceback in the log."""
    server = start_server()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.sampled_from(_ENDPOINTS), _BODIES, _ENCODINGS)
    def check(endpoint: tuple[str, str], body: bytes, encoding: str | None) -> None:
        method, path = endpoint
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + (f"Content-Encoding: {encoding}\r\n" if encoding else "")
            + "Connection: close\r\n\r\n"
        )
        answer = server.request(head.encode() + body, timeout=30)
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:500]
        if status >= 400:
            error = json.loads(answer.partition(b"\r\n\r\n")[2])
            assert set(error["error"]) == {"code", "message"}
            assert error["ok"] is False

    check()
    assert server.get() == 200
    _no_traceback_or_secret(server.text())


# --------------------------------------------------------------------------- the net


def test_a_configured_token_is_masked_in_any_log_line_whatever_path_it_took() -> None:
    """Under the rule (log a failure's type, never its text), `masking` replaces configured
    tokens in every line the handlers emit: a library's exception text, a structlog field."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    try:
        logs.configure("info", "json", out)
        with masking([TOKEN, "other-token"]):
            try:
                raise ValueError(f"Invalid header value char: b'Bearer {TOKEN}\\x01'")
            except ValueError:
                logging.getLogger("aiohttp.server").exception("Error handling request")
            structlog.get_logger("t").info("t.event", header=f"Bearer {TOKEN}\x01")
        logging.getLogger("aiohttp.server").error("after: %s", "other-token")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count(MASK) == 2, text
    assert "after: other-token" in text  # only while inside
