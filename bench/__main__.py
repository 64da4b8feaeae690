"""`python -m bench [capture|scan|idle|sync|agents|traces_cli|cli_share|follow|
server_engines ...] [--quick]`: run,
print the table."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType

from bench import (
    agents_scan,
    capture,
    cli_share,
    follow,
    idle,
    scan,
    server_engines,
    sync,
    traces_cli,
)
from bench.harness import Options, say
from bench.report import Result, table, write_json

BENCHMARKS: dict[str, Callable[[Options], Result]] = {
    "capture": capture.run,
    "scan": scan.run,
    "idle": idle.run,
    "sync": sync.run,
    "agents": agents_scan.run,
    "traces_cli": traces_cli.run,
    "cli_share": cli_share.run,
    "follow": follow.run,
    "server_engines": server_engines.run,
}
QUICK_IDLE_WINDOW_S = 20.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    window = args.idle_window or (QUICK_IDLE_WINDOW_S if args.quick else Options.idle_window_s)
    options = Options(quick=args.quick, seed=args.seed, idle_window_s=window)
    # SIGTERM unwinds like Ctrl-C, so every `with` block stops its daemon and cleans up.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    results = [_run(name, options) for name in dict.fromkeys(args.names or BENCHMARKS)]
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(BENCHMARKS)} (all)")
    parser.add_argument(
        "--quick", action="store_true", help=f"idle window of {QUICK_IDLE_WINDOW_S:g}s"
    )
    parser.add_argument("--idle-window", type=float, metavar="S", help="idle window, seconds")
    parser.add_argument("--seed", type=int, default=Options.seed)
    return parser


def _run(name: str, options: Options) -> Result:
    say(f"== {name}")
    started = time.monotonic()
    try:
        result = BENCHMARKS[name](options)
    except Exception as exc:
        traceback.print_exc()
        result = Result(name, error=f"{type(exc).__name__}: {exc}")
    result.raw["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write_json(result, options=dataclasses.asdict(options))
    say(f"{name}: {'ok' if result.ok else 'FAILED'} in {result.raw['elapsed_s']}s -> {path}")
    return result


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
