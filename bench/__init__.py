"""`make bench`: the numbers of docs/architecture.md §6, each next to a raw baseline from the same
run.

Run with ``python -m bench``. BENCH_SCALE (default 1.0) scales every duration and event count,
e.g. BENCH_SCALE=0.2 for a quick smoke run. Results go to bench/results/latest.json.
"""
