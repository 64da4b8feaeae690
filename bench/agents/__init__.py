"""Corpus generators for the agents added after the first three: one module per agent, each
with `generate(home, cwds, count, seed) -> {trace_id: cwd}`."""
