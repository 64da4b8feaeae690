"""The watcher's floor: what watchdog alone costs for the appends a load window makes.

A child process runs a watchdog Observer on the sessions' directories with tracesd's own
event filter (`EVENT_FILTER`) and a handler that only counts; the bench appends lines of
the same size to the same number of files at the same pacing, and reads the child's CPU
from /proc. No parsing, no database, no network: the part of the daemon's CPU per append
that any daemon built on watchdog pays on this machine.

`python -m bench.watch_floor DIR`: the child (prints `ready`, then the number of events
it saw once a line arrives on stdin).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.measure import BenchError, cpu_seconds


@dataclass(frozen=True, slots=True)
class Floor:
    appends: int
    events: int
    cpu_s: float
    window_s: float

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.window_s

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.appends


def measure(root: Path, *, files: int, period_s: float, window_s: float, line_bytes: int) -> Floor:
    """Each of `files` files gets a `line_bytes` line every `period_s`, staggered evenly,
    for `window_s` (plus a 1 s settle, as the load windows count it)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"session-{i}.jsonl" for i in range(files)]
    for path in paths:
        path.write_bytes(b"{}\n")
    line = b'{"text":"' + b"x" * max(0, line_bytes - 12) + b'"}\n'
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.watch_floor", str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise BenchError("the watchdog floor's child did not start")
        before = cpu_seconds(child.pid)
        started = time.monotonic()
        step = period_s / files
        appends = 0
        for r in range(round(window_s / period_s)):
            for i, path in enumerate(paths):
                due = started + r * period_s + i * step
                time.sleep(max(0.0, due - time.monotonic()))  # pacing only
                with open(path, "ab") as f:
                    f.write(line)
                appends += 1
        time.sleep(max(0.0, started + window_s + 1.0 - time.monotonic()))
        cpu_s = cpu_seconds(child.pid) - before
        child.stdin.write("\n")
        child.stdin.flush()
        events = int(child.stdout.readline().strip() or 0)
    finally:
        child.kill()
        child.wait()
    return Floor(appends, events, cpu_s, window_s)


def _child(directory: str) -> None:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    from tracesd.capture.watch_observer import EVENT_FILTER

    class Count(FileSystemEventHandler):
        events = 0

        def dispatch(self, event: FileSystemEvent) -> None:
            Count.events += 1

    observer = Observer()
    observer.schedule(Count(), directory, recursive=True, event_filter=EVENT_FILTER)
    observer.start()
    print("ready", flush=True)
    sys.stdin.readline()
    print(Count.events, flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
