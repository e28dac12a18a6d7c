"""Training grid throughput: samples/s per method on the tiny Qwen2 preset, and the grid with one lane
(a Ray Train worker group training the cells in sequence) vs two lanes, side by side in one run.

- `per_method`: samples/s over `trainer.train()`, each cell's wall seconds in its worker (trainer
  build, held-out scoring before and after, training) and held-out pairwise accuracy before -> after.
- `grid`: the same 4 cells (tiny-qwen2 x sft, rm, dpo, ppo) in 1 lane and in 2 lanes; a lane's
  start-up (Ray Train controller, worker group, imports) is paid once for all its cells;
  parallel efficiency = the cells' own seconds / (2 x the 2-lane grid's wall time).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

STEPS = 8


def _experiment(results: Path, name: str, methods: list[str], concurrent: int):
    from bench.config import Experiment

    return Experiment.model_validate({
        "name": name, "results_dir": str(results), "seed": 42, "ray": {"num_cpus": 2},
        "data": [{"name": "envri-demo", "loader": "demo"}],
        "splits": {"scheme": "random", "train": 0.6, "valid": 0.2, "test": 0.2},
        "train": {"models": [{"model": "tiny-qwen2"}], "methods": methods, "max_concurrent_cells": concurrent,
                  "hyper": {"epochs": 1, "max_steps": STEPS, "lr": 0.002, "batch_size": 4, "max_length": 192,
                            "lora_r": 4, "lora_alpha": 8, "logging_steps": 4, "save_steps": 100}},
    })


def _grid(results: Path, name: str, methods: list[str], concurrent: int) -> tuple[float, list]:
    from bench.pipeline import Pipeline
    from bench.train.grid import TrainGrid

    p = Pipeline(_experiment(results, name, methods, concurrent))
    grid = TrainGrid(p)
    cells = grid.plan()  # data, BM25 and the cells' training data: outside the timed part
    started = time.perf_counter()
    out = grid.run(cells)
    return time.perf_counter() - started, out


def run(out_dir: Path) -> dict:
    from bench.cluster import ensure_ray
    from bench.config import RayConfig

    ray = ensure_ray(RayConfig(num_cpus=2))  # 2 CPUs: 2 cells of 1 worker each at a time
    work = Path(tempfile.mkdtemp(prefix="perf-train-"))
    keys = ("samples_per_s", "samples", "train_seconds", "seconds", "final_loss", "accuracy_before",
            "pairwise_accuracy", "lane")
    try:
        methods = ["sft", "rm", "dpo", "ppo"]
        seq_wall, seq = _grid(work / "seq", "seq", methods, 1)
        par_wall, par = _grid(work / "par", "par", methods, 2)
        _, extra = _grid(work / "rl", "rl", ["grpo", "rloo"], 1)
        # samples/s from the cells that ran alone (sequential grid, then GRPO/RLOO one at a time)
        per_method = {r.cell.method: {"status": r.status, "error": r.error, **{k: r.metrics.get(k) for k in keys}}
                      for r in seq + extra}
        cell_sum = sum(r.metrics.get("seconds", 0.0) for r in par)
        return {
            "model": "tiny-qwen2", "steps_per_cell": STEPS, "batch_size": 4, "cpus": ray.cluster_resources().get("CPU"),
            "per_method": per_method,
            "grid": {"cells": [r.cell.name for r in par], "lanes": 2, "workers_per_lane": 1,
                     "sequential_wall_s": round(seq_wall, 1), "parallel_wall_s": round(par_wall, 1),
                     "sum_of_cell_wall_s": round(cell_sum, 1),
                     "parallel_efficiency": round(cell_sum / (2 * par_wall), 3),
                     "speedup_vs_sequential": round(seq_wall / par_wall, 3),
                     "all_ok": all(r.status == "ok" for r in seq + par)},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
