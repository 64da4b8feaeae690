"""The traces of the server_engines benchmark: trace i of a corpus of n lives in repository
i mod REPOS, so each repository holds n / REPOS of them and the first page of one
repository (newest first) is known without asking the server. Repository URLs come in the
forms clients send (https with and without .git, scp-like ssh, ssh://), which the server's
filter canonicalises; the new traces of the write load are the same kind of item."""

from __future__ import annotations

from typing import Any

#: repositories of the corpus
REPOS = 1000
#: the first page's size: the API's default `limit`
PAGE = 100
AGENTS = ("claude-code", "codex", "cursor", "gemini-cli")
_EPOCH_MS = 1_767_225_600_000  # 2026-01-01


def canonical_url(repo: int) -> str:
    return f"https://github.com/bench-team/repo{repo:04d}"


def url_form(repo: int, form: int) -> str:
    """One of four spellings of the repository's URL (form mod 4)."""
    path = f"bench-team/repo{repo:04d}"
    return (
        f"https://github.com/{path}",
        f"https://github.com/{path}.git",
        f"git@github.com:{path}.git",
        f"ssh://git@github.com/{path}.git",
    )[form % 4]


def item(i: int) -> dict[str, Any]:
    """Trace i of the corpus, a BatchItem as tracesd's client sends one."""
    repo = i % REPOS
    return {
        "externalId": f"corpus-{i:08d}",
        "agentId": AGENTS[i % len(AGENTS)],
        "title": f"Fix the flaky test in module {i % 97} of repo {repo}",
        "preview": "All tests pass now; the race was in the fixture's teardown.",
        "timestamp": _EPOCH_MS + i * 1000,
        "projectPath": f"/home/dev{i % 20}/src/repo{repo:04d}",
        "gitRemoteUrl": url_form(repo, i // REPOS),
        "gitBranch": f"feature/task-{i % 13}",
        "gitRef": f"{i:040x}",
    }


def first_page(repo: int, traces: int) -> set[str]:
    """The externalIds of the repository's newest PAGE traces in a corpus of `traces`,
    stored in order of i."""
    last = (traces - 1 - repo) // REPOS
    return {f"corpus-{repo + k * REPOS:08d}" for k in range(last, max(-1, last - PAGE), -1)}


def new_item(client: str, n: int) -> dict[str, Any]:
    """A trace the write load sends: never stored before, in one of the repositories."""
    item_ = item(n)
    return {**item_, "externalId": f"load-{client}-{n:08d}"}
