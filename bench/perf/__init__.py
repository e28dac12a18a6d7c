"""Benchmarks behind `make perf`: each module `bench/perf/<name>.py` has `run(out_dir) -> dict`
and writes `results/perf/<name>.json`. Speed-ups are ratios measured side by side in one run."""
