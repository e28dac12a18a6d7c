"""`rerank-bench train CONFIG`: the training grid (registered with `bench.cli.command`)."""
from __future__ import annotations

from bench.cli import command, pipeline_from_args
from bench.train.config import METHODS


def _args(sp) -> None:
    sp.add_argument("--dry-run", action="store_true",
                    help="validate the grid and list its cells (name, method, key, cached or not); train nothing")
    sp.epilog = "methods: " + "; ".join(f"{m} = {v[0]} on {v[1]}, scored by {v[2]}" for m, v in METHODS.items())


@command("train", "train the grid of models x methods (train: section), each cell a Ray Train run; writes "
                  "results/<experiment>/table1.{md,csv,json} and one artifact per cell under train/", add_args=_args)
def cmd_train(args) -> int:
    p = pipeline_from_args(args)
    if p.exp.train is None:
        from bench.errors import InputError

        raise InputError(f"{args.config}: no `train:` section, so there is no grid to train")
    if args.dry_run:
        from bench.train.grid import TrainGrid

        for c in TrainGrid(p).plan():
            state = "finished" if p.cache.is_done("train", c.key) else "to train"
            print(f"{c.name:32} {c.method:5} {c.entry.model:24} data={c.dataset} key={c.key} {state}")
        return 0
    results = p.train_results()
    print((p.out_dir / "table1.md").read_text())
    failed = [r for r in results if r.status != "ok"]
    print(f"{len(results) - len(failed)}/{len(results)} cells ok" + (f", {len(failed)} failed" if failed else ""))
    print(p.summary())
    return 0
