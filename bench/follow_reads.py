"""follow, bytes read per append: a 50 MB Claude Code session followed, then single lines.

The session (10 MB with --quick; a realistic mix of prompts, replies and tool rounds, some
tool outputs of 100 KB+, bench.records) is written before the daemon starts, so the startup
scan captures it, sync sends it and the follower reads it whole, once. When its last
message is on the server, `strace -f -y -e trace=read,pread64` attaches to the daemon (all
its threads) and the session gets N single-line appends (20; 10 with --quick), each waited
for until its message is on the server. From strace's log, every read of the session file
(`-y` names the file of each descriptor) is summed by system call:

* read(2): the message reader (tracesd.messages.readers._lines: open, seek to the recorded
  offset, read) -- the follower's bytes;
* pread64(2): the capture (tracesd.capture.adapters._files reads a head and a tail chunk of
  a changed file to refresh the trace) -- reported, not the follower's.

The whole daemon's /proc/<pid>/io rchar over the appends is reported too (it includes its
SQLite reads). Target: the follower's bytes per append <= 2x the appended bytes (the floor).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import harness
from bench.apiserver import MessageArrivals
from bench.follow_session import FollowOffsets, LiveSession, following, session_id
from bench.harness import Options, Repo, Workspace
from bench.measure import BenchError
from bench.records import ClaudeChain, Clock, Lines, Pool
from bench.report import Result, Row, at_most, fmt

SESSION_BYTES = 50 * 2**20
#: with --quick: the bytes read per append do not depend on the size; the start-up read does
QUICK_SESSION_BYTES = 10 * 2**20
APPENDS = 20
QUICK_APPENDS = 10
FACTOR = 2.0
STRACE = "/usr/bin/strace"
#: `1234 read(7</path>, ""..., 4194304) = 312`; when threads interleave, strace splits a
#: call: `1234 read(7</path>, <unfinished ...>` then `1234 <... read resumed>..., 4194304) = 312`
_CALL = re.compile(rb"^(\d+)\s+(read|pread64)\(\d+<(.*)>, .*\)\s+=\s+(\d+)")
_UNFINISHED = re.compile(rb"^(\d+)\s+(read|pread64)\(\d+<(.*)>, .*<unfinished \.\.\.>")
_RESUMED = re.compile(rb"^(\d+)\s+<\.\.\. (read|pread64) resumed>.*\)\s+=\s+(\d+)")


def run(ws: Workspace, options: Options, result: Result) -> bool:
    (repo,) = harness.make_repos(ws.root / "repos-reads", 1, ws.git_env)
    rng = random.Random(options.seed + 2)
    pool = Pool(rng)
    session = LiveSession(ws, repo, session_id(rng), pool)
    size = QUICK_SESSION_BYTES if options.quick else SESSION_BYTES
    harness.say(f"follow: writing a {size // 2**20} MB session")
    last_uuid, lines = _write_big(session, repo, pool, rng, size)
    appends = QUICK_APPENDS if options.quick else APPENDS
    with (
        following(ws, "reads") as (server, daemon),
        MessageArrivals(server.db, interval_s=0.02) as arrivals,
        FollowOffsets(ws.db, interval_s=0.02) as offsets,
    ):
        started = time.monotonic()
        if offsets.wait(session.id, session.size, 300.0) is None or not arrivals.wait(
            [last_uuid], 300.0
        ):
            raise BenchError("the big session was never read and sent whole")
        backlog_s = time.monotonic() - started
        backlog_messages = arrivals.count
        harness.say(f"follow: strace on, {appends} single-line appends")
        trace_log = ws.root / "strace.log"
        with _Strace(daemon.pid, trace_log):
            rchar = _rchar(daemon.pid)
            sizes = []
            for _ in range(appends):
                appended = session.append()
                sizes.append(appended.size)
                if not arrivals.wait([appended.uuid], 30.0):
                    raise BenchError("an appended message never reached the server")
            time.sleep(0.5)  # the capture of the last change may finish after its message
            rchar = _rchar(daemon.pid) - rchar
    by_file = _reads(trace_log)
    calls = {call: by_file[call, str(session.path)] for call in ("read", "pread64")}
    appended_mean = sum(sizes) / appends
    follower = calls["read"] / appends
    capture = calls["pread64"] / appends
    floor = f"appended {fmt(appended_mean, 'B', 0)}/append"
    result.rows += [
        Row(
            "bytes read: the followed session",
            f"{session.size / 2**20:.1f} MB, {lines:,} lines; read and sent whole at start in "
            f"{fmt(backlog_s, 's')} ({backlog_messages:,} messages on the server)",
        ),
        at_most(
            f"bytes read per append, message reader (n={appends})",
            follower,
            FACTOR * appended_mean,
            "B",
            floor=floor,
            digits=0,
        ),
        Row(
            "bytes read per append, capture (not the follower's)",
            f"{fmt(capture, 'B', 0)} (pread64 of a head and a tail chunk)",
            "",
            floor,
        ),
        Row(
            "bytes read per append, whole daemon (rchar, SQLite included)",
            fmt(rchar / appends, "B", 0),
            "",
            floor,
        ),
    ]
    result.raw["reads"] = {
        "session_bytes": session.size,
        "session_lines": lines,
        "backlog_s": backlog_s,
        "backlog_messages": backlog_messages,
        "appends": appends,
        "appended_bytes": sizes,
        "read_bytes": calls,
        "read_bytes_by_file": [
            {"call": call, "file": path, "bytes": n} for (call, path), n in by_file.most_common(10)
        ],
        "rchar": rchar,
    }
    return follower <= FACTOR * appended_mean


def _write_big(
    session: LiveSession, repo: Repo, pool: Pool, rng: random.Random, size: int
) -> tuple[str, int]:
    """The session's file, ~`size` bytes of a long past session; the last line's uuid and
    the line count. The session's own appends continue after it (LiveSession)."""
    lines = Lines()
    start = datetime.now(UTC) - timedelta(days=1)
    chain = ClaudeChain(session.id, str(repo.path), repo.branch, Clock(start, rng), lines)
    chain.snapshot()
    chain.prompt(rng.choice(pool.prompts))
    while lines.size < size:
        if rng.random() < 0.6:
            chain.tool_round(pool.output(size - lines.size))
        else:
            chain.reply(b'[{"type":"text","text":' + pool.message() + b"}]")
    chain.reply(b'[{"type":"text","text":"Done."}]')
    with open(session.path, "wb") as f:
        f.writelines(lines.parts)
    session.size = lines.size
    return json.loads(lines.parts[-1])["uuid"], len(lines.parts)


class _Strace:
    """strace attached to every thread of `pid` for the `with` block, logging to `path`."""

    def __init__(self, pid: int, path: Path) -> None:
        argv = [STRACE, "-f", "-y", "-s", "0", "-qq", "-e", "trace=read,pread64"]
        self._proc = subprocess.Popen(
            [*argv, "-o", str(path), "-p", str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._pid = pid

    def __enter__(self) -> _Strace:
        deadline = time.monotonic() + 10.0
        while _tracer(self._pid) == 0:  # attached once the daemon shows a tracer
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read() if self._proc.stderr else b""
                self._proc.kill()
                raise BenchError(f"strace did not attach: {err.decode(errors='replace')}")
            time.sleep(0.01)
        time.sleep(0.2)  # -f attaches the other threads just after the first
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()  # detaches
        self._proc.wait(10.0)


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def _reads(log: Path) -> Counter[tuple[str, str]]:
    """Bytes read, by (system call, file)."""
    total: Counter[tuple[str, str]] = Counter()
    unfinished: dict[bytes, bytes] = {}  # thread -> the file of its call in progress
    with open(log, "rb") as f:
        for line in f:
            if done := _CALL.match(line):
                _tid, call, path, count = done.groups()
            elif started := _UNFINISHED.match(line):
                unfinished[started.group(1)] = started.group(3)
                continue
            elif (resumed := _RESUMED.match(line)) and resumed.group(1) in unfinished:
                call, count = resumed.group(2), resumed.group(3)
                path = unfinished.pop(resumed.group(1))
            else:
                continue
            total[call.decode(), path.decode(errors="replace")] += int(count)
    return total


def _rchar(pid: int) -> int:
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise BenchError(f"no rchar in /proc/{pid}/io")
