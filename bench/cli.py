"""`rerank-bench`: one subcommand per pipeline stage, plus `run` for the whole experiment.

Every stage subcommand runs the pipeline up to that stage; finished stages are read from the
cache, so `rerank-bench evaluate CONFIG` after `rerank-bench retrieve CONFIG` only evaluates.
Input errors print one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Callable

from bench import __version__
from bench.errors import EXIT_INPUT_ERROR, InputError

log = logging.getLogger("bench")

COMMANDS: dict[str, tuple[str, Callable, Callable | None, bool]] = {}

# Stage packages that add their own subcommands with `@command` (imported when the parser is built).
COMMAND_MODULES = (
    "bench.train.commands",
    "bench.explain.commands",
    "bench.tune.commands",
    "bench.report.commands",
    "bench.serve.commands",
)


def command(name: str, help_text: str, add_args: Callable | None = None, needs_config: bool = True):
    """Register a subcommand. `add_args(subparser)` adds its own options; CONFIG and --set come
    for free when `needs_config`."""

    def register(fn):
        COMMANDS[name] = (help_text, fn, add_args, needs_config)
        return fn

    return register


def pipeline_from_args(args):
    """The `Pipeline` for a subcommand's CONFIG and --set overrides."""
    return _pipeline(args)


def _pipeline(args):
    from bench.config import load_experiment
    from bench.pipeline import Pipeline

    pipeline = Pipeline(load_experiment(args.config, args.set))
    pipeline.preflight()
    return pipeline


@command("data", "load and validate every data source, write the data artifacts, print a summary")
def cmd_data(args) -> int:
    p = _pipeline(args)
    for ds in p.datasets():
        c = ds.collection
        n_judged = sum(len(v) for v in c.qrels.values())
        split = ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items())
        print(f"{ds.name}: {len(c.queries)} queries, {len(c.corpus)} documents, {n_judged} judgements, "
              f"grades 0-{c.grades_max}, splits: {split}")
    print(p.summary())
    return 0


@command("retrieve", "first-stage BM25 for every data source; TREC run files under results/")
def cmd_retrieve(args) -> int:
    p = _pipeline(args)
    for ds in p.datasets():
        sr = p.first_stage(ds.name)
        print(f"{ds.name}: BM25 run with {len(sr.run.scores)} queries -> {p.cache.path('retrieve', sr.key)}")
    print(p.summary())
    return 0


@command("rerank", "re-rank first-stage candidates with every configured model in Ray actors")
def cmd_rerank(args) -> int:
    p = _pipeline(args)
    for ds in p.datasets():
        for sr in p.system_runs(ds.name)[1:]:
            print(f"{ds.name}: {sr.info.name} -> {p.cache.path('rerank', sr.key)}")
    print(p.summary())
    return 0


@command("evaluate", "ir-measures per query and averaged for every system and data source")
def cmd_evaluate(args) -> int:
    from bench.evaluate.ir import aggregate

    p = _pipeline(args)
    for ds in p.datasets():
        print(aggregate(p.evaluate(ds.name)).to_string(float_format=lambda v: f"{v:.4f}"))
    print(p.summary())
    return 0


# `leaderboard` (exports, --html site) and `verify` live in bench/report/commands.py.


@command("run", "run the whole experiment: every stage, then the leaderboard")
def cmd_run(args) -> int:
    from bench.pipeline import run_all

    p = _pipeline(args)
    run_all(p)
    print((p.out_dir / "leaderboard.md").read_text())
    print(p.summary())
    return 0


@command("models", "list model presets (names usable as `model:` in configs)", needs_config=False)
def cmd_models(args) -> int:
    from bench.models import PRESETS

    for p in PRESETS.values():
        print(f"{p.name:24} {p.family:8} {p.params:6} {p.hub_id or p.description}")
    return 0


@command("schema", "print the experiment config's JSON schema (every key, type, default and description)",
         needs_config=False)
def cmd_schema(args) -> int:
    import json

    from bench.config import Experiment

    print(json.dumps(Experiment.model_json_schema(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rerank-bench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    for name, (help_text, fn, add_args, needs_config) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if needs_config:
            sp.add_argument("config", help="experiment YAML, e.g. configs/quickstart.yaml")
            sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config key (dotted path, YAML value), e.g. --set rerank.depth=20")
        if add_args:
            add_args(sp)
        sp.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("httpx", "filelock", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args) or 0
    except InputError as e:
        print(f"rerank-bench: error: {e}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("rerank-bench: interrupted; finished stages are kept and a re-run resumes from them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m bench.cli`: run the importable `bench.cli` module's main, so subcommands that
    # stage modules register with `from bench.cli import command` land in the same registry.
    from bench.cli import main as _main

    sys.exit(_main())
