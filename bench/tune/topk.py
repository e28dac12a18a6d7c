"""SHAP top-k ablation: how many attribution words should an explanation keep?

One Ray Tune trial per model (a grid over the re-rank systems). A trial loads the system's
scorer once and, for each explained item (the system's own top re-ranked items of the first
`max_queries` evaluated queries), runs KernelSHAP ONCE (`bench.explain.kernel_shap.explain_item`,
with every k of the sweep in its erasure list) and reuses those attributions for every k:

    comprehensiveness@k  p(full) - p(item without its top-k words)        (ERASER; higher = faithful)
    sufficiency@k        p(full) - p(only its top-k words)                (lower = faithful)
    random_comprehensiveness@k  the same with k random words removed      (the baseline to beat)
    aopc@k               mean comprehensiveness over the sweep's k' <= k  (ERASER AOPC)
    query_overlap@k      share of the top-k words that occur in the query

with p = sigmoid(score) (the scorers' neuron is a log-odds). "all" = every word of the item.
The chosen k maximises `tune.topk.criterion` (e.g. comprehensiveness - sufficiency), averaged
over models. Explanation-text metrics need a reason backend and are not part of this sweep.

Outputs: results/<exp>/topk.{md,csv,json,png}.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.tune.config import TOPK_METRICS, TopKConfig, parse_criterion

log = logging.getLogger("bench")

ALL_K = 1_000_000  # stands for "every word": erasure clamps k to the item's word count


def _systems(p) -> list:
    cfg: TopKConfig = p.exp.tune.topk
    specs = {s.name: s for s in p.exp.rerank.scorers}
    names = cfg.systems or list(specs)
    if not names:
        raise InputError("tune.topk: no rerank.systems to explain; add models under rerank.systems")
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise InputError(f"tune.topk.systems: unknown system(s) {unknown}; expected names from rerank.systems: "
                         f"{', '.join(specs)}")
    return [specs[n] for n in names]


def check_topk(p) -> None:
    from bench.models import check_model

    for spec in _systems(p):
        check_model(spec.model)


def _explain_cfg(p):
    from bench.explain.config import ExplainConfig

    base = p.exp.explain or ExplainConfig()
    ks = [k for k in p.exp.tune.topk.ks if k != "all"] + ([ALL_K] if "all" in p.exp.tune.topk.ks else [])
    return base.model_copy(update={"ks": ks})


def _jobs(p, spec) -> list[dict]:
    """The system's top re-ranked items of the first `max_queries` evaluated queries."""
    from bench.models import PRESETS
    from bench.systems import SystemInfo

    cfg: TopKConfig = p.exp.tune.topk
    name = p.exp.data[0].name
    preset = PRESETS.get(spec.model)
    run = p.rerank(name, spec, SystemInfo(spec.name, kind="zero-shot", family=preset.family if preset else "")).run
    col = p.dataset(name).collection
    jobs = []
    for qid in p.rerank_qids(name)[:cfg.max_queries]:
        for docid, _ in run.ranked(qid, cfg.top_items):
            jobs.append({"qid": qid, "docid": docid, "query": col.queries[qid], "text": col.corpus[docid].full_text()})
    return jobs


def item_metrics(result: dict, query: str, ks: list[int]) -> list[dict]:
    """Per-k metrics of one explained item, all from its single set of attributions."""
    from bench.evaluate.explanations import erasure_drops, query_overlap

    if result.get("status") not in ("ok", "k_clamped") or not result.get("erasure"):
        return []
    words, values = result["words"], np.asarray(result["word_values"])
    order = sorted(range(len(words)), key=lambda i: (-values[i], i))
    rows, comps = [], []
    for k in ks:
        drops = erasure_drops(result["full_score"], result["erasure"][str(k)])
        comps.append(drops["comprehensiveness"])
        rows.append({"k": "all" if k == ALL_K else k, **drops, "aopc": float(np.mean(comps)),
                     "query_overlap": query_overlap([words[i] for i in order[:min(k, len(words))]], query)})
    return rows


def topk_trial(config: dict, jobs: dict, specs: dict, explain_cfg, seed: int, out_dir: str) -> None:
    """Tune trial: one model, attributions once per item, metrics for every k."""
    import torch
    from ray import tune

    from bench.explain.kernel_shap import explain_item
    from bench.explain.stage import explain_spec
    from bench.rerank.scorers import build_scorer

    torch.set_num_threads(1)
    system = config["system"]
    scorer = build_scorer(explain_spec(specs[system], explain_cfg))
    rows, shap_calls = [], 0
    for i, job in enumerate(jobs[system]):
        result = explain_item(scorer, job["query"], job["text"], explain_cfg, seed)  # once per item
        shap_calls += 1
        for r in item_metrics(result, job["query"], list(explain_cfg.ks)):
            rows.append({"model": system, "qid": job["qid"], "docid": job["docid"], "n_words": len(result["words"]),
                         **r})
        print(f"[topk {system}] item {i + 1}/{len(jobs[system])} {job['qid']}/{job['docid']} "
              f"{result.get('status')} in {result.get('seconds', 0):.1f}s", flush=True)
    path = Path(out_dir) / f"{system}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"rows": rows, "explain_item_calls": shap_calls}))
    tmp.replace(path)
    tune.report({"items": len(jobs[system]), "explain_item_calls": shap_calls, "rows": len(rows)})


def run_topk(p) -> dict[str, Path]:
    """Run the ablation as Tune trials (one per model); write topk.{csv,json,md,png}."""
    import pandas as pd
    from ray import tune

    from bench.artifacts import write_json_atomic, write_text_atomic
    from bench.tune.sweep import start_ray
    from bench.provenance import stamp

    cfg: TopKConfig = p.exp.tune.topk
    check_topk(p)
    specs = {s.name: s for s in _systems(p)}
    ecfg = _explain_cfg(p)
    seed = ecfg.seed if ecfg.seed is not None else p.exp.seed
    start_ray(p)
    jobs = {name: _jobs(p, spec) for name, spec in specs.items()}
    work = (p.out_dir / "tune" / "topk").resolve()
    work.mkdir(parents=True, exist_ok=True)
    for f in work.glob("*.json"):
        f.unlink()
    trainable = tune.with_resources(tune.with_parameters(topk_trial, jobs=jobs, specs=specs, explain_cfg=ecfg,
                                                         seed=seed, out_dir=str(work)), {"CPU": 1})
    tuner = tune.Tuner(trainable, param_space={"system": tune.grid_search(list(specs))},
                       tune_config=tune.TuneConfig(max_concurrent_trials=p.exp.tune.max_concurrent_trials),
                       run_config=tune.RunConfig(name="topk", storage_path=str(work / "ray"), verbose=1))
    grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"top-k trial failed: {grid.errors[0]}")
    items = pd.DataFrame([r for name in specs for r in json.loads((work / f"{name}.json").read_text())["rows"]])
    return write_topk(p, items)


def summarise(items, criterion: str):
    """Mean of each metric per (model, k) plus the criterion; the chosen k per model and overall."""
    terms = parse_criterion(criterion)
    order = {k: i for i, k in enumerate(dict.fromkeys(items["k"]))}
    table = (items.groupby(["model", "k"], sort=False)[list(TOPK_METRICS)].mean().reset_index())
    table.insert(2, "n_items", items.groupby(["model", "k"], sort=False).size().values)
    table["criterion"] = sum(sign * table[name] for sign, name in terms)
    table["_o"] = table["k"].map(order)
    table = table.sort_values(["model", "_o"]).drop(columns="_o").reset_index(drop=True)
    best_per_model = {m: g.loc[g["criterion"].idxmax(), "k"] for m, g in table.groupby("model", sort=False)}
    overall = table.groupby("k", sort=False)["criterion"].mean()
    return table, best_per_model, overall.idxmax(), overall


def write_topk(p, items) -> dict[str, Path]:
    from bench.artifacts import write_json_atomic, write_text_atomic
    from bench.provenance import stamp

    cfg: TopKConfig = p.exp.tune.topk
    table, best_per_model, chosen, overall = summarise(items, cfg.criterion)
    out = p.out_dir
    out.mkdir(parents=True, exist_ok=True)
    prov = stamp(p.exp.hash(), p.exp.seed, {d.name: d.checksum for d in p.datasets()})
    paths = {"csv": out / "topk.csv", "json": out / "topk.json", "md": out / "topk.md", "png": out / "topk.png"}
    write_text_atomic(paths["csv"], table.to_csv(index=False, float_format="%.6f"))
    write_json_atomic(paths["json"], {"criterion": cfg.criterion, "chosen_k": chosen,
                                      "chosen_k_per_model": best_per_model, "rows": table.to_dict(orient="records"),
                                      "provenance": prov})
    ecfg = _explain_cfg(p)
    lines = [f"# SHAP top-k ablation: {p.exp.name}", "",
             f"Criterion: `{cfg.criterion}` (mean over items, p = sigmoid(score)). "
             f"**Chosen k = {chosen}** (criterion averaged over models: "
             + ", ".join(f"k={k}: {v:.4f}" for k, v in overall.items()) + ").", "",
             "Chosen k per model: " + ", ".join(f"{m}: {k}" for m, k in best_per_model.items()) + ".", "",
             f"KernelSHAP once per item ({ecfg.unit}s, nsamples={ecfg.nsamples}, removal={ecfg.removal}); "
             f"every k reuses those attributions. {cfg.max_queries} queries x top {cfg.top_items} item(s) per model.",
             "", "| model | k | items | " + " | ".join(TOPK_METRICS) + " | criterion |",
             "|---|---|---|" + "---|" * (len(TOPK_METRICS) + 1)]
    for r in table.to_dict(orient="records"):
        mark = " **" if r["k"] == best_per_model[r["model"]] else ""
        lines.append(f"| {r['model']} | {r['k']}{mark.strip() and ' (best)'} | {r['n_items']} | "
                     + " | ".join(f"{r[m]:.4f}" for m in TOPK_METRICS) + f" | {r['criterion']:.4f} |")
    lines += ["", f"config hash {prov.get('config_hash', '')}, seed {p.exp.seed}", ""]
    write_text_atomic(paths["md"], "\n".join(lines))
    _plot(table, paths["png"], cfg.criterion)
    log.info("topk: chosen k=%s -> %s", chosen, paths["md"])
    return paths


def _plot(table, path: Path, criterion: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.artifacts import atomic_path

    metrics = list(TOPK_METRICS) + ["criterion"]
    ks = list(dict.fromkeys(table["k"]))
    x = {k: i for i, k in enumerate(ks)}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), dpi=90)
    for ax, metric in zip(axes.flat, metrics):
        for model, g in table.groupby("model", sort=False):
            ax.plot([x[k] for k in g["k"]], g[metric], marker="o", label=model)
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("k (attribution words)")
        ax.set_title(criterion if metric == "criterion" else metric, fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("SHAP top-k ablation: each metric against k, one curve per model")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
