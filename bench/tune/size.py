"""Model-size ablation: one training method across sizes of one family.

One Ray Tune trial per model (a grid over `tune.size.models`), each the same trial as the
hyperparameter sweep (`bench.tune.sweep.sweep_trial`: train with the base hyperparameters,
re-rank the validation queries, report validation nDCG). Then, per size, KernelSHAP
comprehensiveness@k (k = explain.k) of the trained scorer on a few validation items, and the
parameter count read from the model itself. Outputs results/<exp>/size.{md,csv,png}.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.tune.config import SizeConfig

log = logging.getLogger("bench")


def check_size(p) -> None:
    from bench.models import check_model
    from bench.tune.sweep import base_train

    if base_train(p) is None:
        raise InputError("tune.size: each size is trained: add a `train:` (or `tune.train:`) slice with the base "
                         "hyperparameters")
    for i, entry in enumerate(p.exp.tune.size.models):
        try:
            check_model(entry.model)
        except InputError as e:
            raise InputError(f"tune.size.models.{i}.model: {e}") from None


def count_params(model_dir: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # shapes only, no weights loaded
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return int(sum(t.numel() for t in model.parameters()))


def faithfulness(spec_kwargs: dict, rows: list[dict], p) -> float:
    """Mean comprehensiveness@k (p = sigmoid(score)) over the given items: the explain stage's primary explainer
    once per item (`bench.explain.item.explain_one`)."""
    from bench.config import ScorerSpec
    from bench.evaluate.explanations import sigmoid
    from bench.explain.config import ExplainConfig
    from bench.explain.item import explain_one
    from bench.rerank.scorers import build_scorer
    from bench.tune.topk import trial_explain_cfg

    cfg = p.exp.explain or ExplainConfig()
    cfg = trial_explain_cfg(cfg.model_copy(update={"ks": [cfg.k]}))
    scorer = build_scorer(ScorerSpec(**spec_kwargs))
    seed = cfg.seed if cfg.seed is not None else p.exp.seed
    comps = []
    for r in rows:
        res = explain_one(scorer, r["query"], r["text"], cfg, seed)
        if res.get("erasure"):
            e = res["erasure"][str(cfg.k)]
            comps.append(float(sigmoid(res["full_score"]) - sigmoid(e["removed"])))
    return float(np.mean(comps)) if comps else float("nan")


def run_size(p) -> dict[str, Path]:
    import pandas as pd
    from ray import tune

    from bench.artifacts import write_json_atomic, write_text_atomic
    from bench.tune.sweep import start_ray
    from bench.models import resolve_model
    from bench.tune.sweep import _base, sweep_trial, tune_root

    cfg: SizeConfig = p.exp.tune.size
    check_size(p)
    models = [e.model for e in cfg.models]
    base = {**_base(p, models), "method": cfg.method}
    root = tune_root(p) / "size"
    root.mkdir(parents=True, exist_ok=True)
    base["starts_log"] = str(root / "starts.log")
    start_ray(p)
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, base=base), dict(p.exp.tune.resources_per_trial))
    grid = tune.Tuner(trainable, param_space={"model": tune.grid_search(models)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=p.exp.tune.max_concurrent_trials),
                      run_config=tune.RunConfig(name="size", storage_path=str(root / "ray"), verbose=1,
                                                checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    if grid.errors:
        raise RuntimeError(f"size trial failed: {grid.errors[0]}")
    by_model = {r.config["model"]: r for r in grid}
    items = base["valid"]["rows"]
    seen, rows = set(), []
    for r in items:  # the first candidate of the first N validation queries
        if r["qid"] not in seen and len(seen) < cfg.faithfulness_items:
            seen.add(r["qid"])
            rows.append(r)
    table = []
    for entry in cfg.models:
        res = by_model[entry.model]
        with res.checkpoint.as_directory() as d:
            trial = json.loads((Path(d) / "trial.json").read_text())
            spec = {**trial["spec"], "name": entry.label}
            if (Path(d) / "adapter").is_dir():
                spec["adapter"] = str(Path(d) / "adapter")
            else:
                spec["model"] = str(Path(d) / "model")
            comp = faithfulness(spec, rows, p)
        table.append({"model": entry.label, "params": count_params(resolve_model(entry.model)),
                      "method": cfg.method, "valid_nDCG@10": res.metrics["valid_nDCG@10"],
                      "comprehensiveness": comp, "steps": res.metrics.get("step")})
    df = pd.DataFrame(table).sort_values("params")
    out = p.out_dir
    paths = {"csv": out / "size.csv", "md": out / "size.md", "png": out / "size.png"}
    write_text_atomic(paths["csv"], df.to_csv(index=False, float_format="%.6f"))
    k = (p.exp.explain.k if p.exp.explain else 10)
    lines = [f"# Model-size ablation: {p.exp.name}", "",
             f"Method {cfg.method}, base hyperparameters; validation nDCG@10 of each trained size; "
             f"comprehensiveness@{k} on {len(rows)} validation items.", "",
             "| model | parameters | valid nDCG@10 | comprehensiveness@k |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['valid_nDCG@10']:.4f} | {r['comprehensiveness']:.4f} |"
              for r in df.to_dict(orient="records")]
    write_text_atomic(paths["md"], "\n".join(lines) + "\n")
    write_json_atomic(out / "size.json", {"rows": df.to_dict(orient="records")})
    _plot(df, paths["png"], k)
    return paths


def _plot(df, path: Path, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.artifacts import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=90)
    for ax, col, label in ((axes[0], "valid_nDCG@10", "validation nDCG@10"),
                           (axes[1], "comprehensiveness", f"comprehensiveness@{k}")):
        ax.plot(df["params"], df[col], marker="o")
        for x, y, m in zip(df["params"], df[col], df["model"]):
            ax.annotate(m, (x, y), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
