"""What capture did since start: ingest's per-file results and the scans' unreadable
directories, added up for status (`capture` in GET /status).

Ingest and the scanner only return what happened; whoever runs them (the app's wiring)
adds it here, so every number has one writer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tracesd.capture.ingest import Result


@dataclass
class CaptureCounts:
    captured_total: int = 0
    updated_total: int = 0
    errors_total: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    last_capture_at: float | None = None
    last_error: str | None = None

    def add(self, results: Iterable[Result]) -> None:
        """Count a batch's results."""
        for r in results:
            if r.captured or r.updated:
                self.captured_total += r.captured
                self.updated_total += r.updated
                self.last_capture_at = time.time()
            for reason, n in r.skipped:
                self.skipped_by_reason[reason] += n
            if r.failure is not None and r.error is not None:
                self.errors_total += 1
                self.errors_by_reason[r.error] += 1
                self.last_error = r.failure

    def unreadable_directories(self, paths: Iterable[str]) -> None:
        """Count directories a scan could not list (each once while it lasts)."""
        for path in paths:
            self.errors_total += 1
            self.errors_by_reason["unreadable"] += 1
            self.last_error = f"cannot list directory {path!r}"
