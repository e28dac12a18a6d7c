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

        exp, cfg = p.exp, p.exp.train
        sp = exp.splits
        split = f"split train/valid/test={sp.train:g}/{sp.valid:g}/{sp.test:g}" if sp.scheme == "random" \
            else f"split {sp.scheme}"
        print(f"{exp.name}: {split}, seed {exp.seed}, prompt {cfg.prompt}, {cfg.scaling.num_workers} worker(s) per "
              f"cell{', DeepSpeed ' + str(cfg.deepspeed) if cfg.deepspeed else ''}")
        grid = TrainGrid(p)
        grid.dry_run = True  # an R2R grid asks no teacher: its cells' keys depend on the teacher's lists
        cells = grid.plan()
        for c in cells:
            h = cfg.hyper_for(c.entry)
            r2r = c.method.startswith("r2r-")
            state = "after the teacher" if r2r else "finished" if p.cache.is_done("train", c.key) else "to train"
            if r2r:
                c.key = "-"
            steps = f"max_steps={h.max_steps}" if h.max_steps else f"epochs={h.epochs:g}"
            tuning = "full" if h.full_finetune else f"lora_r={h.lora_r}"
            print(f"{c.name:32} {c.method:12} {c.entry.model:24} {steps} lr={h.lr:g} batch={h.batch_size} "
                  f"grad_accum={h.grad_accum} max_length={h.max_length} {tuning} data={c.dataset} key={c.key} {state}")
        if exp.reason is not None:
            r = exp.reason
            print(f"explanations: {r.backend}:{r.model} num_beams={r.num_beams} temperature={r.temperature:g} "
                  f"top_p={r.top_p:g} max_new_tokens={r.max_new_tokens}")
        if any(m.startswith("r2r-") for m in cfg.methods):
            t = exp.r2r.teacher
            print(f"R2R teacher: {t.backend}:{t.model} prompt={t.prompt} temperature={t.temperature:g} top_p={t.top_p:g}")
        print(f"{len(cells)} cells ({sum(c.key == '-' or not p.cache.is_done('train', c.key) for c in cells)} to train); "
              f"nothing trained (--dry-run)")
        return 0
    results = p.train_results()
    print((p.out_dir / "table1.md").read_text())
    failed = [r for r in results if r.status != "ok"]
    print(f"{len(results) - len(failed)}/{len(results)} cells ok" + (f", {len(failed)} failed" if failed else ""))
    print(p.summary())
    return 0
