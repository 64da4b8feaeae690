"""Git context from real repositories: every answer independent, inert, never stale."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import commit, git, make_repo, processes_with
from tracesd.git.context import GitResolver
from tracesd.git.redact import scrub_url
from tracesd.models import GitInfo


def resolver(timeout_s: float = 5.0, path: str | None = None) -> GitResolver:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return GitResolver(timeout_s=timeout_s, environ=env)


def counting_git(tmp_path: Path) -> tuple[str, Path]:
    """A `git` first on PATH that logs each call, then runs the real git."""
    bindir = tmp_path / "countbin"
    bindir.mkdir()
    calls = tmp_path / "git-calls.log"
    real = shutil.which("git")
    script = bindir / "git"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    calls.touch()
    return f"{bindir}:{os.environ['PATH']}", calls


async def test_full_repository_gives_remote_branch_and_commit(tmp_path: Path) -> None:
    """A repository with an origin and a commit answers all three fields."""
    repo = make_repo(tmp_path / "r", remote="https://github.com/acme/widget.git")
    info = await resolver().lookup(str(repo))
    assert GitInfo("https://github.com/acme/widget", "main", git(repo, "rev-parse", "HEAD")) == info


async def test_non_git_directory_is_none(tmp_path: Path) -> None:
    """A plain directory has no git context, and that is not an error."""
    plain = tmp_path / "plain"
    plain.mkdir()
    assert await resolver().lookup(str(plain)) is None


async def test_missing_directory_is_none(tmp_path: Path) -> None:
    """A directory that no longer exists has no git context."""
    assert await resolver().lookup(str(tmp_path / "gone")) is None
    assert await resolver().lookup(None) is None


async def test_repository_without_remote_keeps_branch_and_ref(tmp_path: Path) -> None:
    """No origin: the remote is NULL, branch and commit still answer."""
    repo = make_repo(tmp_path / "r", remote=None)
    info = await resolver().lookup(str(repo))
    assert info == GitInfo(None, "main", git(repo, "rev-parse", "HEAD"))


async def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    """Detached HEAD: branch NULL, ref is the commit."""
    repo = make_repo(tmp_path / "r", commits=2)
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    info = await resolver().lookup(str(repo))
    assert info == GitInfo("https://github.com/example/project", None, first)


async def test_repository_without_commits_has_branch_but_no_ref(tmp_path: Path) -> None:
    """An unborn branch: the branch name answers, the ref is NULL."""
    repo = make_repo(tmp_path / "r", commits=0, branch="trunk")
    info = await resolver().lookup(str(repo))
    assert info == GitInfo("https://github.com/example/project", "trunk", None)


async def test_subdirectory_resolves_to_its_repository(tmp_path: Path) -> None:
    """A session started in a subdirectory gets the repository's context."""
    repo = make_repo(tmp_path / "r")
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    assert await resolver().lookup(str(sub)) == await resolver().lookup(str(repo))


async def test_worktree_resolves_its_own_branch_and_shared_remote(tmp_path: Path) -> None:
    """A linked worktree (`.git` is a file) answers its own HEAD and the common origin."""
    repo = make_repo(tmp_path / "r", remote="https://github.com/acme/widget.git")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    sha = commit(worktree, "on feature")
    info = await resolver().lookup(str(worktree))
    assert info == GitInfo("https://github.com/acme/widget", "feature", sha)
    main = await resolver().lookup(str(repo))
    assert main is not None
    assert main.branch == "main"


async def test_credentials_in_remote_are_stripped(tmp_path: Path) -> None:
    """user:token in an https origin never leaves gitinfo."""
    repo = make_repo(tmp_path / "r", remote="https://user:ghp_SECRET123@github.com/acme/w.git")
    info = await resolver().lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://github.com/acme/w"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
        ("https://ghp_tokenonly@github.com/a/b.git", "https://github.com/a/b.git"),
        ("http://u:p@host:8080/a/b.git?private_token=x#frag", "http://host:8080/a/b.git"),
        ("HTTPS://u:p@Host/x", "https://Host/x"),
        ("ssh://git:hunter2@host/a/b.git", "ssh://git@host/a/b.git"),
        ("ssh://git@host:22/a/b.git", "ssh://git@host:22/a/b.git"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
        ("/srv/git/b.git", "/srv/git/b.git"),
        ("https://u:p@[::1]:8080/x.git", "https://[::1]:8080/x.git"),
        ("https://u:p@[bad/x.git", "https://[bad/x.git"),
    ],
)
def test_scrub_url_removes_credentials(raw: str, clean: str) -> None:
    """Credentials are removed from every URL form git accepts; nothing else changes."""
    assert clean == scrub_url(raw)


async def test_hostile_fsmonitor_config_is_never_executed(tmp_path: Path) -> None:
    """A repository whose config runs a command on fsmonitor cannot make us run it."""
    repo = make_repo(tmp_path / "r")
    (repo / "f.txt").write_text("x")
    git(repo, "add", "f.txt")
    marker = tmp_path / "PWNED"
    git(repo, "config", "core.fsmonitor", f"touch {marker}; false")
    git(repo, "config", "core.hooksPath", str(tmp_path / "hooks"))
    _careless_git_status(repo)
    assert marker.exists(), "control: the fixture must trigger fsmonitor on a careless call"
    marker.unlink()

    info = await resolver().lookup(str(repo))

    assert info is not None
    assert info.branch == "main"
    assert not marker.exists()


def _careless_git_status(repo: Path) -> None:
    subprocess.run(["git", "status"], cwd=repo, capture_output=True, check=False)


def hanging_git(tmp_path: Path, body: str) -> tuple[GitResolver, str]:
    """A resolver (0.5 s deadline) whose `git` is a bash script; `{marker}` in `body`
    names the processes it leaves, so a test can look for them."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = f"fakegit-{os.getpid()}-{time.monotonic_ns()}"
    fake = bindir / "git"
    fake.write_text("#!/bin/bash\n" + body.format(marker=marker) + "\n")
    fake.chmod(0o755)
    return resolver(timeout_s=0.5, path=f"{bindir}:{os.environ['PATH']}"), marker


async def test_hanging_git_times_out_and_kills_its_process_group(tmp_path: Path) -> None:
    """A git that never answers is killed at the deadline, children included."""
    repo = make_repo(tmp_path / "r")
    r, marker = hanging_git(tmp_path, 'exec -a "{marker}" sleep 3600')

    started = time.monotonic()
    info = await r.lookup(str(repo))
    elapsed = time.monotonic() - started

    assert info == GitInfo()
    assert 0.5 <= elapsed < 3.0
    assert r.timeouts == 1
    assert list(processes_with(marker)) == []
    # Within the backoff the repository is not asked again: no second wait.
    started = time.monotonic()
    assert await r.lookup(str(repo)) == GitInfo()
    assert time.monotonic() - started < 0.4


async def test_hanging_git_children_in_the_group_are_killed(tmp_path: Path) -> None:
    """A hanging git that forked a helper leaves no process behind."""
    repo = make_repo(tmp_path / "r")
    r, marker = hanging_git(tmp_path, '( exec -a "{marker}" sleep 3600 ) &\nwait')

    started = time.monotonic()
    await r.lookup(str(repo))
    assert time.monotonic() - started >= 0.5  # it really hung until the deadline
    await asyncio.sleep(0.1)

    assert list(processes_with(marker)) == []


async def test_helper_escaping_the_process_group_cannot_hold_the_lookup(tmp_path: Path) -> None:
    """A git helper that setsid()s away still holding stdout is abandoned at the deadline."""
    repo = make_repo(tmp_path / "r")
    r, marker = hanging_git(tmp_path, "setsid bash -c 'exec -a \"{marker}\" sleep 3600' &\nexit 0")
    try:
        started = time.monotonic()
        info = await r.lookup(str(repo))
        assert time.monotonic() - started < 3.0
        assert info == GitInfo()
    finally:
        for pid in processes_with(marker):
            os.kill(pid, 9)


async def test_cache_answers_an_unchanged_repository_without_running_git(tmp_path: Path) -> None:
    """The second lookup of an unchanged repository runs no git at all."""
    repo = make_repo(tmp_path / "r")
    path, calls = counting_git(tmp_path)
    r = resolver(path=path)
    first = await r.lookup(str(repo))
    ran = len(calls.read_text().splitlines())
    second = await r.lookup(str(repo / "."))
    assert first == second
    assert ran == 3
    assert ran == len(calls.read_text().splitlines())
    assert r.cache_hits == 1


async def test_cache_is_never_stale_after_checkout_commit_or_remote_change(tmp_path: Path) -> None:
    """Every change git would see is seen by the very next lookup."""
    repo = make_repo(tmp_path / "r")
    r = resolver()
    await r.lookup(str(repo))

    origin = "https://github.com/example/project"
    git(repo, "checkout", "-q", "-b", "other")
    assert await r.lookup(str(repo)) == GitInfo(origin, "other", git(repo, "rev-parse", "HEAD"))

    sha = commit(repo)
    assert await r.lookup(str(repo)) == GitInfo(origin, "other", sha)

    git(repo, "remote", "set-url", "origin", "https://example.org/moved.git")
    assert await r.lookup(str(repo)) == GitInfo("https://example.org/moved", "other", sha)

    git(repo, "pack-refs", "--all")
    sha = commit(repo)
    assert await r.lookup(str(repo)) == GitInfo("https://example.org/moved", "other", sha)

    git(repo, "checkout", "-q", "--detach")
    assert await r.lookup(str(repo)) == GitInfo("https://example.org/moved", None, sha)


async def test_concurrent_lookups_of_one_repository_share_one_git_run(tmp_path: Path) -> None:
    """Ten sessions in one repository at once cost three git calls, not thirty."""
    repo = make_repo(tmp_path / "r")
    path, calls = counting_git(tmp_path)
    r = resolver(path=path)
    results = await asyncio.gather(*(r.lookup(str(repo)) for _ in range(10)))
    assert len(set(results)) == 1
    assert len(calls.read_text().splitlines()) == 3


async def test_a_batch_of_directories_asks_each_repository_once(tmp_path: Path) -> None:
    """What one ingest batch asks: two repositories (one twice, via a subdirectory), a
    plain directory and a missing one. Git runs three times per repository, no more."""
    one, two = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    (one / "sub").mkdir()
    plain = tmp_path / "plain"
    plain.mkdir()
    path, calls = counting_git(tmp_path)
    r = resolver(path=path)
    dirs = [str(one), str(one / "sub"), str(two), str(plain), str(tmp_path / "gone"), str(one)]
    found = await r.lookup_many(dirs)
    assert sorted(found) == sorted(set(dirs))
    assert found[str(one)] == found[str(one / "sub")] == await r.lookup(str(one))
    branch, sha = git(two, "symbolic-ref", "--short", "HEAD"), git(two, "rev-parse", "HEAD")
    assert found[str(two)] == GitInfo("https://github.com/example/project", branch, sha)
    assert found[str(plain)] is None
    assert found[str(tmp_path / "gone")] is None
    assert len(calls.read_text().splitlines()) == 6


async def test_environment_git_dir_does_not_redirect_lookups(tmp_path: Path) -> None:
    """GIT_DIR and friends in the daemon's environment never steer the lookup."""
    repo = make_repo(tmp_path / "r", remote="https://github.com/acme/right.git")
    decoy = make_repo(tmp_path / "decoy", remote="https://github.com/acme/wrong.git")
    env = {**os.environ, "GIT_DIR": str(decoy / ".git"), "GIT_WORK_TREE": str(decoy)}
    info = await GitResolver(timeout_s=5, environ=env).lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://github.com/acme/right"


# ------------------------------------------------------------ which remote, which form


async def test_remote_is_stored_in_canonical_form(tmp_path: Path) -> None:
    """An scp-like origin is stored as https://host/path (INTERFACE section 5)."""
    repo = make_repo(tmp_path / "r", remote="git@GitHub.com:Acme/Widget.git")
    info = await resolver().lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://github.com/Acme/Widget"


def two_remotes(path: Path) -> Path:
    repo = make_repo(path, remote="git@github.com:acme/origin.git")
    git(repo, "remote", "add", "upstream", "ssh://git@github.com:22/acme/upstream.git/")
    return repo


async def test_the_current_branchs_configured_remote_is_used(tmp_path: Path) -> None:
    """`branch.<name>.remote` names the repository, not origin."""
    repo = two_remotes(tmp_path / "r")
    git(repo, "config", "branch.main.remote", "upstream")
    info = await resolver().lookup(str(repo))
    assert info == GitInfo(
        "https://github.com/acme/upstream", "main", git(repo, "rev-parse", "HEAD")
    )


async def test_a_changed_branch_remote_is_seen_by_the_next_lookup(tmp_path: Path) -> None:
    """The cache is keyed on the config files: `git config branch.x.remote` (and a checkout
    of a branch with another remote) is seen at once, never answered from the cache."""
    repo = two_remotes(tmp_path / "r")
    r = resolver()
    first = await r.lookup(str(repo))
    assert first is not None
    assert first.remote_url == "https://github.com/acme/origin"

    git(repo, "config", "branch.main.remote", "upstream")
    second = await r.lookup(str(repo))
    assert second is not None
    assert second.remote_url == "https://github.com/acme/upstream"

    git(repo, "checkout", "-q", "-b", "other")
    third = await r.lookup(str(repo))
    assert third is not None
    assert (third.remote_url, third.branch) == ("https://github.com/acme/origin", "other")
    assert r.cache_hits == 0


async def test_a_detached_head_uses_origin(tmp_path: Path) -> None:
    """No branch, no branch remote: origin names the repository."""
    repo = two_remotes(tmp_path / "r")
    git(repo, "config", "branch.main.remote", "upstream")
    git(repo, "checkout", "-q", "--detach")
    info = await resolver().lookup(str(repo))
    assert info == GitInfo("https://github.com/acme/origin", None, git(repo, "rev-parse", "HEAD"))


@pytest.mark.parametrize("remote", [".", "gone"])
async def test_a_branch_remote_without_a_url_falls_back_to_origin(
    tmp_path: Path, remote: str
) -> None:
    """`branch.main.remote = .` (a local branch tracked) or a remote with no URL: origin."""
    repo = two_remotes(tmp_path / "r")
    git(repo, "config", "branch.main.remote", remote)
    info = await resolver().lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://github.com/acme/origin"


async def test_insteadof_rewrites_the_remote_like_git_remote_get_url(tmp_path: Path) -> None:
    """`url.<base>.insteadOf` applies, the longest matching prefix winning, as in
    `git remote get-url`; the result is then canonical."""
    repo = make_repo(tmp_path / "r", remote="gh:acme/widget.git")
    git(repo, "config", "url.git@github.com:.insteadOf", "gh:")
    git(repo, "config", "url.https://git.example.org/mirror/.insteadOf", "gh:acme/")
    expected = git(repo, "remote", "get-url", "origin")
    assert expected == "https://git.example.org/mirror/widget.git"  # control: git's answer
    info = await resolver().lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://git.example.org/mirror/widget"


async def test_a_lookup_still_runs_git_three_times_in_parallel(tmp_path: Path) -> None:
    """Choosing the branch's remote costs no extra git run (capture latency)."""
    repo = two_remotes(tmp_path / "r")
    git(repo, "config", "branch.main.remote", "upstream")
    path, calls = counting_git(tmp_path)
    info = await resolver(path=path).lookup(str(repo))
    assert info is not None
    assert info.remote_url == "https://github.com/acme/upstream"
    assert len(calls.read_text().splitlines()) == 3
