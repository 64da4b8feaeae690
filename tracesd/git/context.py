"""Git context of a directory: its repository's canonical URL, branch, HEAD commit.

Each of the three is asked of `git` separately, in parallel, so a repository with no remote
or no commits still answers the rest. The remote is the current branch's
(`branch.<name>.remote`), else `origin` (INTERFACE section 5): one `git config` run reads
every branch's remote, every remote's URL and every `url.<base>.insteadOf`, and the choice
is made here once the branch is known, so it costs no second round trip; the URL is
rewritten by `insteadOf` as `git remote get-url` would, then kept in canonical form
(remote_url.py), which never holds a credential.

Every call is inert on any repository: fsmonitor and hooks off, no optional locks, no
prompts, stdin closed, and one deadline for the whole lookup (our own reads that find and
fingerprint the repository included) that kills the process group of any git still running.

Answers are cached per repository, keyed by a fingerprint of the files git reads them from
(HEAD, the branch ref, packed-refs, the config files; see repository.py). The fingerprint is taken
before git runs and checked on every lookup, so a checkout or a commit is seen by the very
next trace: the cache never answers from a timer. When one of those files is a FIFO or a
device, git is not run at all and the repository's fields are NULL until it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from tracesd.git import repository
from tracesd.git.remote_url import canonical_or_none
from tracesd.git.repository import Fingerprint, Print, Repo
from tracesd.models import GitInfo

log = structlog.get_logger("tracesd.gitinfo")

#: after a timeout, a repository is not asked again for this long (unless it changes)
TIMEOUT_BACKOFF_S = 30.0
#: kept of each git output; the config answer lists every branch's remote (a repository
#: with thousands of branches holds a few hundred kB of them)
_MAX_OUTPUT = 1024 * 1024

_SAFE_FLAGS = (
    "--no-optional-locks",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.untrackedCache=false",
)
_QUERIES = {
    "remotes": (
        "config",
        "-z",
        "--get-regexp",
        r"^(branch\..*\.remote|remote\..*\.url|url\..*\.insteadof)$",
    ),
    "branch": ("symbolic-ref", "--quiet", "--short", "HEAD"),
    "ref": ("rev-parse", "--verify", "--quiet", "HEAD"),
}
_FIELDS = ("remote_url", "branch", "ref")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def use_pidfd_child_watcher() -> None:
    """On Python 3.11, watch git children with pidfds instead of one thread per child.

    3.11's default ThreadedChildWatcher starts (and waits for) a thread for every
    subprocess; during a scan that is a third of the event loop's time. 3.12+ already
    uses pidfds where the kernel has them (Linux >= 5.3), as this does. Call from the
    running loop.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # an older kernel, or seccomp: keep the default
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


@dataclass(slots=True)
class _Entry:
    fingerprint: Print
    info: GitInfo
    #: monotonic deadline before which a timed-out repository is not asked again
    retry_after: float = 0.0


class GitResolver:
    """Looks up GitInfo for directories; one instance per daemon."""

    def __init__(self, *, timeout_s: float, environ: Mapping[str, str], git: str = "git") -> None:
        self.timeout_s = timeout_s
        self._env = _git_env(environ)
        self._git = shutil.which(git, path=self._env.get("PATH")) or git
        self._global_configs = repository.global_configs(environ)
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[tuple[str, Print], asyncio.Future[_Entry]] = {}
        #: counters for status and benchmarks
        self.lookups = 0
        self.cache_hits = 0
        self.timeouts = 0
        self.failures = 0

    async def lookup(self, directory: str | None) -> GitInfo | None:
        """GitInfo of `directory`; None when it is missing or not inside a repository."""
        if not directory:
            return None
        return (await self.lookup_many([directory]))[directory]

    async def lookup_many(self, directories: Iterable[str]) -> dict[str, GitInfo | None]:
        """GitInfo of each directory (see `lookup`), the repositories asked in parallel.

        Finding each repository and fingerprinting it is a dozen stats and reads; they run
        on one worker thread for the lot, because on the event loop each of those system
        calls waits for the GIL behind busy parser threads, and status answers would wait
        behind them.
        """
        wanted = list(dict.fromkeys(d for d in directories if d))
        if not wanted:
            return {}
        # One deadline for the whole lookup: the reads that find and fingerprint the
        # repositories (which never block on a FIFO or read a device, see safeopen, but a
        # hung filesystem can still hold them) and every git run after them.
        deadline = time.monotonic() + self.timeout_s
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                located = await asyncio.to_thread(self._locate, wanted)
        except TimeoutError:
            self.timeouts += 1
            log.warning(
                "gitinfo.timeout", stage="locate", directory=wanted[0], timeout_s=self.timeout_s
            )
            return dict.fromkeys(wanted)
        found = await asyncio.gather(*(self._resolve(*where, deadline) for where in located))
        return dict(zip(wanted, found, strict=True))

    def _locate(self, directories: list[str]) -> list[tuple[str, Repo | None, Fingerprint]]:
        located: list[tuple[str, Repo | None, Fingerprint]] = []
        for directory in directories:
            repo = repository.discover(directory)
            found = repository.fingerprint(repo, self._global_configs) if repo else _NONE
            located.append((directory, repo, found))
        return located

    async def _resolve(
        self, directory: str, repo: Repo | None, found: Fingerprint, deadline: float
    ) -> GitInfo | None:
        if repo is None:
            return None
        fingerprint = found.print
        self.lookups += 1
        cached = self._cache.get(repo.worktree)
        if (
            cached is not None
            and cached.fingerprint == fingerprint
            and (cached.retry_after == 0.0 or time.monotonic() < cached.retry_after)
        ):
            self.cache_hits += 1
            return cached.info
        key = (repo.worktree, fingerprint)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(repo, directory, found, deadline))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        entry = await asyncio.shield(pending)
        return entry.info

    async def _ask(self, repo: Repo, directory: str, found: Fingerprint, deadline: float) -> _Entry:
        if found.special is not None:
            # A FIFO or a device where git reads: git would hang on it, or read it, until
            # the deadline. Not asked; one line per repository state (cached as usual).
            self.failures += 1
            log.warning(
                "gitinfo.failed",
                worktree=repo.worktree,
                reason="special_file",
                path=found.special.path,
                kind=found.special.kind,
            )
            entry = _Entry(found.print, GitInfo(None, None, None))
            self._cache[repo.worktree] = entry
            return entry
        names = list(_QUERIES)
        results = await asyncio.gather(
            *(self._run(_QUERIES[name], directory, deadline) for name in names)
        )
        answers = dict(zip(names, results, strict=True))
        timed_out = any(r is _TIMEOUT for r in results)
        values = {k: (v if isinstance(v, str) else None) for k, v in answers.items()}
        refusals = [r for k in ("branch", "ref") if isinstance(r := answers[k], _Failed)]
        if len(refusals) == 2:
            # git refuses the repository outright (dubious ownership, a broken .git): one
            # line per repository state, since the answer is cached like any other. (`git
            # config` still answers then, from the other config files.)
            self.failures += 1
            message = refusals[0].message
            log.warning(
                "gitinfo.failed",
                worktree=repo.worktree,
                reason="unsafe_repository" if "dubious ownership" in message else "git_error",
                error=message,
            )
        if values["ref"] is not None and not _SHA.match(values["ref"]):
            values["ref"] = None
        # Which remote depends on the branch: when that answer timed out, none is chosen
        # (origin might not be the branch's remote).
        config = values.pop("remotes")
        if answers["branch"] is _TIMEOUT:
            config = None
        info = GitInfo(canonical_or_none(_remote_url(config, values["branch"])), **values)
        entry = _Entry(found.print, info)
        if timed_out:
            self.timeouts += 1
            entry.retry_after = time.monotonic() + TIMEOUT_BACKOFF_S
            log.warning(
                "gitinfo.timeout",
                worktree=repo.worktree,
                timeout_s=self.timeout_s,
                answered=[k for k in _FIELDS if getattr(info, k) is not None],
            )
        self._cache[repo.worktree] = entry
        return entry

    async def _run(self, args: tuple[str, ...], cwd: str, deadline: float) -> str | object | None:
        """stdout of one git command; None when it has no answer (or could not start),
        _Failed when git exited with an error message, _TIMEOUT when killed at the
        deadline."""
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _Collect(loop),
                self._git,
                *_SAFE_FLAGS,
                *args,
                cwd=cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as a whole
            )
        except OSError as exc:
            self.failures += 1
            log.warning("gitinfo.spawn_failed", git=self._git, error=exc.strerror)
            return None
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                await proto.finished
        except TimeoutError:
            await _kill(transport, proto)
            return _TIMEOUT
        except BaseException:
            _kill_group(transport.get_pid())
            raise
        finally:
            # Also closes our end of the pipe, so a helper that escaped the process group
            # and still holds it open cannot hold us.
            transport.close()
        if transport.get_returncode() != 0:
            error = _first_line(proto.stderr)
            return _Failed(error) if error else None
        text = bytes(proto.stdout).decode("utf-8", "replace").strip()
        return text or None


def _remote_url(config: str | None, branch: str | None) -> str | None:
    """The URL of `branch`'s remote, else of origin, from `git config -z --get-regexp`
    output; rewritten by the longest matching `url.<base>.insteadOf`, like git does."""
    if config is None:
        return None
    urls: dict[str, str] = {}
    branch_remote: str | None = None
    rewrites: list[tuple[str, str]] = []  # (insteadOf prefix, base), in config order
    for entry in config.split("\0"):
        key, _, value = entry.partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            urls.setdefault(key[len("remote.") : -len(".url")], value)  # the first, like git
        elif branch is not None and key == f"branch.{branch}.remote":
            branch_remote = value
        elif key.startswith("url.") and key.endswith(".insteadof"):
            rewrites.append((value, key[len("url.") : -len(".insteadof")]))
    url = urls.get(branch_remote or "origin") or urls.get("origin")
    if url is None:
        return None
    longest = ("", "")
    for prefix, base in rewrites:
        if prefix and url.startswith(prefix) and len(prefix) > len(longest[0]):
            longest = (prefix, base)
    if longest[0]:
        url = longest[1] + url[len(longest[0]) :]
    return url


class _Timeout:
    pass


@dataclass(frozen=True, slots=True)
class _Failed:
    message: str


def _first_line(stderr: bytes | bytearray) -> str:
    """git's error message, one line, bounded, with any URL credentials removed."""
    line = stderr.decode("utf-8", "replace").strip().partition("\n")[0][:300]
    return re.sub(r"://[^/\s@]*@", "://", line)


_TIMEOUT = _Timeout()
_NONE = Fingerprint(())


def _git_env(environ: Mapping[str, str]) -> dict[str, str]:
    # No GIT_* from our own environment may steer discovery or config (GIT_DIR and friends).
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    env.pop("SSH_ASKPASS", None)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        GIT_ASKPASS="/bin/false",
        LC_ALL="C",
    )
    return env


class _Collect(asyncio.SubprocessProtocol):
    """Keeps the first _MAX_OUTPUT bytes of stdout (git's answers are tiny) and of stderr;
    `finished` resolves once the process has exited and its pipes are closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.stdout if fd == 1 else self.stderr
        room = _MAX_OUTPUT - len(kept)
        if room > 0:
            kept += data[:room]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def _kill(transport: asyncio.SubprocessTransport, proto: _Collect) -> None:
    """Kill the process group and wait (briefly) until the process is reaped."""
    _kill_group(transport.get_pid())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proto.exited), 1.0)


def _kill_group(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _loop_deadline(deadline: float) -> float:
    """Translate a time.monotonic() deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
