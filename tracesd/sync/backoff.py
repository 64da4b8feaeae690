"""Backoff: when sync may try again after a failure, and steps of the wall clock.

After the n-th failure in a row the next attempt waits a delay drawn between `base_s` and
min(`cap_s`, base_s * 2^n) (exponential backoff with full jitter), at least the server's
Retry-After (clamped to [base_s, 15 min]); after a refused API key, the cap. The deadline is
kept on the monotonic clock, so a step of the wall clock (NTP, suspend) neither stretches
nor cuts it short. Its wall-clock copy is what sync stores for a restart; read back, it is
clamped to the longest wait there is, so a clock that was wrong then costs at most that.

ClockWatch notices steps of the wall clock (the offset between it and the monotonic clock
moving by CLOCK_STEP_S or more), for what keeps its times on the wall clock: APScheduler.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

#: bounds for a server's Retry-After
RETRY_AFTER_MAX_S = 900.0
#: how often the wall clock is compared with the monotonic one
CLOCK_CHECK_S = 5.0
#: a change of their offset at least this large is a step of the wall clock
CLOCK_STEP_S = 2.0


class Backoff:
    def __init__(self, base_s: float, cap_s: float, rng: random.Random) -> None:
        self.base_s = base_s
        self.cap_s = max(cap_s, base_s)
        self._rng = rng
        self._until: float | None = None  # monotonic

    def left(self) -> float:
        """Seconds until the backoff ends; 0 when there is none."""
        return 0.0 if self._until is None else max(0.0, self._until - time.monotonic())

    def fail(self, failures: int, *, retry_after: float | None = None, auth: bool = False) -> float:
        """Start the wait after the `failures`-th failure in a row; returns its length."""
        if auth:
            delay = self.cap_s
        else:
            # 2**n overflows a float after 1,023 failures in a row (~9 hours of outage at
            # the default cap), and the count survives restarts: the exponent stops at 62.
            ceiling = min(self.cap_s, self.base_s * 2.0 ** min(max(failures, 0), 62))
            delay = self._rng.uniform(self.base_s, ceiling)
        if retry_after is not None and math.isfinite(retry_after):
            delay = max(delay, min(max(retry_after, self.base_s), RETRY_AFTER_MAX_S))
        self._until = time.monotonic() + delay
        return delay

    def resume(self, wall_deadline: float | None) -> None:
        """Resume a wait stored (as wall-clock time) before a restart, clamped."""
        if wall_deadline is None:
            self._until = None
            return
        longest = max(self.cap_s, RETRY_AFTER_MAX_S)
        self._until = time.monotonic() + min(max(wall_deadline - time.time(), 0.0), longest)

    def reset(self) -> None:
        self._until = None


class ClockWatch:
    """Calls `on_step(seconds)` when the wall clock is stepped (checked every CLOCK_CHECK_S
    on the monotonic clock)."""

    def __init__(self, on_step: Callable[[float], None]) -> None:
        self._on_step = on_step
        self._offset = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._offset = time.time() - time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(CLOCK_CHECK_S, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        offset = time.time() - time.monotonic()
        step, self._offset = offset - self._offset, offset
        if abs(step) >= CLOCK_STEP_S:
            self._on_step(step)
        self._timer = asyncio.get_running_loop().call_later(CLOCK_CHECK_S, self._check)
