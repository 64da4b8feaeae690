"""sd_notify: tell systemd that the daemon is ready, how it is doing, and that it is alive.

The protocol is one datagram per message to the socket in $NOTIFY_SOCKET (a path, or an
abstract name starting with "@"), so it takes a few lines, not a library. Without
$NOTIFY_SOCKET (not under systemd) every call does nothing.

The watchdog pings (`WATCHDOG=1`, every half of $WATCHDOG_USEC) are sent from a task on
the event loop: if the loop is blocked, the pings stop and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("tracesd.notify")

#: STATUS= lines are sent at most this often
STATUS_INTERVAL_S = 5.0


class Notifier:
    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.enabled = bool(address)
        self.watchdog_s = _watchdog_interval(environ)
        self._socket: socket.socket | None = None
        self._last_status = float("-inf")
        self._failed = False

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")
        self._last_status = time.monotonic()

    def status(self, status: str) -> None:
        """A STATUS= line, at most every STATUS_INTERVAL_S."""
        now = time.monotonic()
        if now - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = now
            self._send(f"STATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    async def watchdog(self, status: Callable[[], str]) -> None:
        """Ping the watchdog (and refresh STATUS=) until cancelled; returns at once when
        systemd asked for no watchdog."""
        if not self.enabled:
            return
        interval = self.watchdog_s / 2 if self.watchdog_s else STATUS_INTERVAL_S
        while True:
            if self.watchdog_s:
                self._send("WATCHDOG=1")
            self.status(status())
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:  # once: systemd would restart us for the missing pings
                log.warning("notify.send_failed", error=exc.strerror)
                self._failed = True


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """$WATCHDOG_USEC in seconds, if it is meant for this process ($WATCHDOG_PID)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000
