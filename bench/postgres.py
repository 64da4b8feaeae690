"""A real PostgreSQL for the benchmarks: pgserver's PostgreSQL 16 (a wheel, no system
package) in a directory of the workspace, on a Unix socket there, stopped at the end; and
the CPU its processes used (the postmaster, and every backend and worker it started)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from bench.harness import Stops
from bench.measure import cpu_seconds

with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import get_server


class Postgres(Stops):
    """`pgserver.get_server(directory)`: initdb on first use, then the server started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with warnings.catch_warnings():  # and again when the server starts
            warnings.simplefilter("ignore")
            self._server = get_server(directory, cleanup_mode="stop")

    def stop(self) -> None:
        self._server.cleanup()

    def create_database(self, name: str) -> str:
        """A new empty database; its libpq URL (no password: the socket trusts its owner)."""
        self._server.psql(f"CREATE DATABASE {name};")
        return str(self._server.get_uri(name))

    @property
    def postmaster_pid(self) -> int:
        with (self.directory / "postmaster.pid").open(encoding="ascii") as f:
            return int(f.readline())

    def cpu_seconds(self) -> float:
        """User + system CPU of PostgreSQL so far: the postmaster (with the backends it has
        reaped) and every process it runs now."""
        postmaster = self.postmaster_pid
        total = cpu_seconds(postmaster)
        for pid in children(postmaster):
            try:
                total += cpu_seconds(pid)
            except OSError:
                continue  # exited since we listed it (its CPU moves to the postmaster's)
        return total


def children(parent: int) -> list[int]:
    """The pids whose parent is `parent`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            found.append(int(entry))
    return found
