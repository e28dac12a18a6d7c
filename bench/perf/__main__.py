"""`python -m bench.perf [NAME ...]`: run the named benchmarks (default: all) into results/perf/."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from pathlib import Path

from bench.artifacts import write_json_atomic
from bench.provenance import package_versions


def available() -> list[str]:
    import bench.perf

    return sorted(m.name for m in pkgutil.iter_modules(bench.perf.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(available())})")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"python -m bench.perf: unknown benchmark {unknown[0]!r}; expected one of {available()}", file=sys.stderr)
        return 2
    for name in names:
        result = importlib.import_module(f"bench.perf.{name}").run(args.out)
        result = {"benchmark": name, **result, "versions": package_versions()}
        write_json_atomic(args.out / f"{name}.json", result)
        print(json.dumps(result, indent=1, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
