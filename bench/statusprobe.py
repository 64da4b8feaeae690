"""GET /status latency on the daemon's Unix socket, sampled from a thread.

A plain socket per request (connect, GET, read to EOF), every `interval_s`, so what is
timed is what `curl --unix-socket` or `tracesd status` would wait for: the daemon's event
loop noticing the request, building the snapshot, and answering.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

_REQUEST = b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def status_latency_s(path: Path, timeout_s: float = 5.0) -> float | None:
    """Seconds for one GET /status; None when nothing answered (not listening yet)."""
    started = time.perf_counter()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout_s)
            client.connect(str(path))
            client.sendall(_REQUEST)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    except OSError:
        return None
    if not answer.startswith(b"HTTP/1.1 200"):
        return None
    return time.perf_counter() - started


class StatusProbe:
    """Samples GET /status latency until stopped (use as a context manager)."""

    def __init__(self, path: Path, interval_s: float = 0.05) -> None:
        self.samples_ms: list[float] = []
        self._path = path
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="status-probe", daemon=True)

    def __enter__(self) -> StatusProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._stopped.wait(self._interval_s):
            took = status_latency_s(self._path)
            if took is not None:
                self.samples_ms.append(took * 1000)
