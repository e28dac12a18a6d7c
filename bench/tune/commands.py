"""`rerank-bench tune CONFIG [--resume]`: Ray Tune sweeps (registered with `bench.cli.command`)."""
from __future__ import annotations

import sys

from bench.cli import command, pipeline_from_args


def _args(sp) -> None:
    sp.add_argument("--resume", action="store_true",
                    help="continue an interrupted sweep from its Tune state (Tuner.restore): finished trials are "
                         "kept, unfinished and errored ones are run again")
    sp.add_argument("--only", choices=["sweep", "topk", "size"], action="append",
                    help="run only these parts of the tune: slice (repeatable); default every part configured")
    sp.epilog = ("tune.space: a Ray Tune sweep, each trial = train (train.hyper updated by the trial) + re-rank "
                 "+ validation nDCG, ASHA/FIFO scheduler, grid/random/optuna/hyperopt search; writes "
                 "results/<exp>/tune/trials.csv, best.json and the leaderboard with the best trial re-evaluated "
                 "on test. tune.topk: SHAP top-k ablation -> results/<exp>/topk.{md,csv,json,png}. "
                 "tune.size: model-size ablation -> results/<exp>/size.{md,csv,png}.")


@command("tune", "Ray Tune sweeps (tune: section): hyperparameter/model/method trials with ASHA, the SHAP "
                 "top-k ablation and the model-size ablation", add_args=_args)
def cmd_tune(args) -> int:
    from bench.errors import InputError

    p = pipeline_from_args(args)
    cfg = p.exp.tune
    if cfg is None:
        raise InputError(f"{args.config}: no `tune:` section, so there is nothing to sweep")
    parts = args.only or ["sweep", "topk", "size"]
    # Every part's input checks first: bad input exits 2 before any trial starts.
    if "sweep" in parts and cfg.space is not None:
        from bench.tune.sweep import check_sweep

        check_sweep(p)
    if "topk" in parts and cfg.topk is not None:
        from bench.tune.topk import check_topk

        check_topk(p)
    if "size" in parts and cfg.size is not None:
        from bench.tune.size import check_size

        check_size(p)
    status = 0
    if "sweep" in parts and cfg.space is not None:
        from bench.tune.sweep import run_sweep, tune_root, unfinished_trials

        grid = run_sweep(p, resume=args.resume)
        if unfinished_trials(grid):  # Ctrl-C: Tune saved its state; finished trials are kept
            print(f"rerank-bench: sweep interrupted with {unfinished_trials(grid)} unfinished trial(s); "
                  f"continue with: rerank-bench tune {args.config} --resume", file=sys.stderr)
            return 130
        if (tune_root(p) / "best.json").is_file():
            p.leaderboard()  # the best trial joins as kind "tuned", evaluated on evaluate.split (test)
            print((p.out_dir / "leaderboard.md").read_text())
        print(f"trials: {tune_root(p) / 'trials.csv'}")
        if grid.errors:
            status = 1
    if "topk" in parts and cfg.topk is not None:
        from bench.tune.topk import run_topk

        out = run_topk(p)
        print(out["md"].read_text())
    if "size" in parts and cfg.size is not None:
        from bench.tune.size import run_size

        out = run_size(p)
        print(out["md"].read_text())
    print(p.summary())
    return status
