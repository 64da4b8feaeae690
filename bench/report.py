"""Results: rows checked against targets, percentiles, the Markdown table, the JSON files."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    value: str
    target: str = ""
    floor: str = ""
    #: None for a row that only informs
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: ""}[self.passed]


@dataclass(slots=True)
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    #: every number behind the rows, for bench/results/<name>.json
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(row.passed is not False for row in self.rows)


def fmt(value: float, unit: str = "", digits: int = 1) -> str:
    return f"{value:,.{digits}f} {unit}".strip()


def at_most(
    metric: str, value: float, limit: float, unit: str, *, floor: str = "", digits: int = 1
) -> Row:
    return Row(
        metric, fmt(value, unit, digits), f"<= {fmt(limit, unit, digits)}", floor, value <= limit
    )


def at_least(
    metric: str, value: float, limit: float, unit: str, *, floor: str = "", digits: int = 1
) -> Row:
    return Row(
        metric, fmt(value, unit, digits), f">= {fmt(limit, unit, digits)}", floor, value >= limit
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def spread(values: Sequence[float], digits: int = 1) -> str:
    """`p50 a, p90 b, p99 c, max d` of a sample; `no samples` when empty."""
    if not values:
        return "no samples"
    dist = distribution(values)
    return ", ".join(f"{k} {dist[k]:.{digits}f}" for k in ("p50", "p90", "p99", "max"))


def table(results: Sequence[Result]) -> str:
    lines = [
        "| benchmark | metric | value | target | floor | result |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.name} | error | {_cell(result.error)} |  |  | FAIL |")
        for row in result.rows:
            cells = (result.name, row.metric, row.value, row.target, row.floor, row.verdict)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def write_json(result: Result, *, options: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result.name}.json"
    document = {
        "benchmark": result.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
        "host": _host(),
        "ok": result.ok,
        "error": result.error,
        "rows": [{**asdict(row), "result": row.verdict} for row in result.rows],
        "raw": result.raw,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _host() -> dict[str, Any]:
    """The machine, and which tracesd the benchmarks ran (its path, commit, local changes)."""
    source = _tracesd_source()
    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "git": _git(".", "--version"),
        "tracesd_path": str(source),
        "tracesd_commit": _git(source, "rev-parse", "HEAD"),
        "tracesd_uncommitted": _git(source, "status", "--porcelain", "--", ".").splitlines(),
    }


def _tracesd_source() -> Path:
    """The tracesd package the child processes import (PYTHONPATH may point elsewhere)."""
    code = "import os, tracesd; print(os.path.dirname(tracesd.__file__))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    )
    return Path(done.stdout.strip())


def _git(cwd: Path | str, *args: str) -> str:
    """git's answer, or "" (not a repository, say)."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    return done.stdout.rstrip()
