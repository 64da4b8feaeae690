"""tracesd: capture every coding-agent session with the git context it was made in."""

__version__ = "0.1.0"
