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
import threading
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
    from bench.artifacts import first_missing

    _RUN["out_dir"] = pipeline.out_dir
    _RUN["created"] = first_missing(pipeline.out_dir)
    pipeline.preflight()
    from bench import console

    console.open_log_file(pipeline.out_dir, args.command)  # named on the run's last line
    return pipeline


# What the running command created, so that an input error can take it back ("nothing written").
_RUN: dict = {}


def _stop_ray() -> None:
    """Ctrl-C: shut down the local Ray cluster this process started, with its training workers and actors."""
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - stopping is best effort; the message and exit code follow
        pass


def _shown(path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    from pathlib import Path

    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _undo_outputs() -> None:
    """After an input error: remove the results folder this command created (or just its log file)."""
    import shutil

    from bench import console

    log_path = console.log_file()
    console.close_log_file()
    created = _RUN.get("created")
    if created is not None:  # the results folder (or its parents) did not exist before this command
        shutil.rmtree(created, ignore_errors=True)
        return
    if log_path is not None and log_path.exists():
        log_path.unlink()
        if not any(log_path.parent.iterdir()):
            log_path.parent.rmdir()


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
    from bench import console
    from bench.pipeline import run_all

    p = _pipeline(args)
    board = run_all(p)
    print(board.console_table())
    print(p.summary())
    print(f"results: {_shown(p.out_dir)}/ (leaderboard.md, table1.md, logs in {_shown(console.log_file())})")
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

    print(json.dumps(experiment_schema(Experiment), indent=1))
    return 0


def experiment_schema(model) -> dict:
    """The JSON schema with the experiment's own keys first and the definitions they use last."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", None)
    first = ["title", "description", "type", "properties", "required"]
    ordered = {k: schema[k] for k in first if k in schema}
    ordered.update({k: v for k, v in schema.items() if k not in ordered})
    if defs is not None:
        ordered["$defs"] = defs
    return ordered


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rerank-bench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on the console")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show more on the console: -v adds every library's log records, -vv debug lines")
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
    from bench import console

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    console.setup(-1 if args.quiet else args.verbose)
    _RUN.clear()
    try:
        return args.func(args) or 0
    except InputError as e:
        _undo_outputs()
        print(f"rerank-bench: error: {e}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError) as e:
        # an output path the user gave that cannot be written: their input, one line
        _undo_outputs()
        print(f"rerank-bench: error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except BrokenPipeError:
        # `rerank-bench schema | head`: the reader went away; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        # Threads still blocked (a training lane's fit in Ray, an HTTP request) would hold the exit.
        threads_running = _RUN.get("out_dir") is not None and threading.active_count() > 1
        print("rerank-bench: interrupted; finished stages are kept and a re-run resumes from them", file=sys.stderr)
        sys.stderr.flush()
        if threads_running:
            # Leave at once. No ray.shutdown() under them (Ray would end this process with exit
            # code 1): a reaper stops the local cluster's processes once this one is gone; a joined
            # cluster reaps the driver's workers itself. See bench/reaper.py.
            from bench.reaper import reap_descendants_after_exit

            reap_descendants_after_exit()
            console.close_log_file()
            logging.shutdown()
            os._exit(130)
        _stop_ray()
        return 130
    except Exception:
        if console.log_file() is not None:
            log.error("failed; library output and the full log are in %s", _shown(console.log_file()))
        raise
    finally:
        console.close_log_file()


if __name__ == "__main__":
    # `python -m bench.cli`: run the importable `bench.cli` module's main, so subcommands that
    # stage modules register with `from bench.cli import command` land in the same registry.
    from bench.cli import main as _main

    sys.exit(_main())
