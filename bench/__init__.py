"""Benchmarks of tracesd against floors measured in the same run: `python -m bench`.

capture  session file written -> row committed with git context (a real `tracesd run`)
scan     `tracesd scan --json` over 10,000 realistic sessions in 100 real repositories
idle     the daemon watching 10,000 sessions in 5,000+ directories: CPU, RSS, no writes
sync     10,000 pending traces -> `tracesd server` (batch vs PUT); capture -> on the server
follow   messages follow growing sessions to `tracesd server`: latency at one message a
         second, 200 sessions appending (CPU, RSS, delivery), bytes read per append of a
         50 MB session (strace)

Results: a Markdown table on stdout, raw numbers in bench/results/<name>.json.
"""
