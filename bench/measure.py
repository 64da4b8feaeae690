"""Measuring processes: wall time, CPU and peak RSS of a child run to completion, and the
/proc readers (CPU, memory, inotify watches) for processes that keep running."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


# Defined here, not in bench.harness, because status_mb raises it and harness imports this
# module (harness re-raises it from Workspace and Daemon).
class BenchError(Exception):
    """The benchmark could not run: a process died, an expected event never came."""


# ---------------------------------------------------------------------- child process


@dataclass(frozen=True, slots=True)
class Child:
    returncode: int
    wall_s: float
    #: user + system CPU of the child and everything it waited for (git)
    cpu_s: float
    #: the child's peak resident set (VmHWM), polled every 10 ms while it ran
    peak_rss_mb: float
    stdout: str


def run_child(
    argv: Sequence[str], env: Mapping[str, str], *, stderr: Path, timeout_s: float = 600.0
) -> Child:
    """Run to completion: wall time from spawn to exit, CPU from wait4, peak RSS from /proc.

    Not wait4's ru_maxrss: at exec, Linux folds the replaced address space's high-water mark
    into it, and with vfork that is this (large) process's, so a 300 MB benchmark process
    makes every child report 300 MB.
    """
    with stderr.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        # Popen returns once the child has exec'd, so /proc shows its own address space.
        peak = _PeakRss(proc.pid)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        assert proc.stdout is not None
        try:
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            killer.cancel()
            peak.stop()
            proc.stdout.close()
        wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    return Child(
        returncode=proc.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak.mb,
        stdout=out.decode("utf-8", "replace"),
    )


class _PeakRss:
    """Polls a process's VmHWM on a thread until it exits (a zombie has no VmHWM)."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.mb = 0.0
        self._pid = pid
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _poll(self) -> None:
        while True:
            try:
                self.mb = max(self.mb, status_mb(self._pid, "VmHWM"))
            except (OSError, BenchError):
                return
            if self._stopped.wait(self._interval_s):
                return


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (all threads, and children it reaped)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    # after the command name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime ...
    return sum(int(v) for v in fields[11:15]) * _CLOCK_TICK_S


def status_mb(pid: int, key: str) -> float:
    """A memory line of /proc/<pid>/status (`VmRSS`, `VmHWM`) in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) / 1024
    raise BenchError(f"no {key} in /proc/{pid}/status")


def inotify_watches(pid: int) -> int:
    """How many inotify watches the process holds (one per watched directory)."""
    count = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
                count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue  # closed while we looked
    return count


def count_directories(roots: Sequence[Path]) -> int:
    """Directories under (and including) each existing root, symlinks not followed."""
    return sum(1 + sum(len(dirs) for _, dirs, _ in os.walk(r)) for r in roots if r.is_dir())


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after `grace_s`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (not idle, not
    waiting for I/O), from /proc/stat: all processes, this benchmark's and everyone else's."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is counted in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) * _CLOCK_TICK_S
