"""SHAP top-k ablation: how many attribution words should an explanation keep?

One Ray Tune trial per model (a grid over the re-rank systems). A trial loads the system's
scorer once and, for each explained item (the system's own top re-ranked items of the first
`max_queries` evaluated queries), runs the explain stage's primary explainer ONCE
(`bench.explain.item.explain_one`, the explain stage's own per-item code, with every k of the sweep
in its erasure list) and reuses those attributions for every k:

    comprehensiveness@k  p(full) - p(item without its top-k words)        (ERASER; higher = faithful)
    sufficiency@k        p(full) - p(only its top-k words)                (lower = faithful)
    random_comprehensiveness@k  the same with k random words removed      (the baseline to beat)
    aopc@k               mean comprehensiveness over the sweep's k' <= k  (ERASER AOPC)
    query_overlap@k      share of the top-k words that occur in the query

with p = sigmoid(score) (the scorers' neuron is a log-odds). "all" = every word of the item.
The chosen k maximises `tune.topk.criterion` (e.g. comprehensiveness - sufficiency), averaged
over models. Explanation-text metrics need a reason backend and are not part of this sweep.

Every mean (per model and k, and over models) is the mean of per-query means with a seeded 95 %
percentile bootstrap interval resampling queries. Whether the chosen k is distinguishable from its
neighbours in the ks list: the per-query criterion at the chosen k against each neighbour's, a paired
test over queries (report.test), Holm-corrected over the neighbour comparisons of that model (or of
the over-models choice).

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


def trial_explain_cfg(explain_cfg):
    """The primary explainer alone, no per-item metrics or stability rerun: the ablation needs its values and
    the erasure scores at every k."""
    return explain_cfg.model_copy(update={"explainers": [explain_cfg.pair_entries()[0]], "metrics": False,
                                          "repeat_seed_offset": None})


def topk_trial(config: dict, jobs: dict, specs: dict, explain_cfg, seed: int, out_dir: str) -> None:
    """Tune trial: one model, attributions once per item, metrics for every k."""
    import torch
    from ray import tune

    from bench.explain.item import explain_one
    from bench.explain.stage import explain_spec
    from bench.rerank.scorers import build_scorer

    torch.set_num_threads(1)
    system = config["system"]
    scorer = build_scorer(explain_spec(specs[system], explain_cfg))
    cfg = trial_explain_cfg(explain_cfg)
    rows, calls = [], 0
    for i, job in enumerate(jobs[system]):
        result = explain_one(scorer, job["query"], job["text"], cfg, seed, qid=job["qid"])  # once per item
        calls += 1
        for r in item_metrics(result, job["query"], list(cfg.ks)):
            rows.append({"model": system, "qid": job["qid"], "docid": job["docid"], "n_words": len(result["words"]),
                         **r})
        print(f"[topk {system}] item {i + 1}/{len(jobs[system])} {job['qid']}/{job['docid']} "
              f"{result.get('status')} in {result.get('seconds', 0):.1f}s", flush=True)
    path = Path(out_dir) / f"{system}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"rows": rows, "explain_calls": calls, "explainer": cfg.primary}))
    tmp.replace(path)
    tune.report({"items": len(jobs[system]), "explain_calls": calls, "rows": len(rows)})


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


def _with_criterion(items, criterion: str):
    items = items.copy()
    items["criterion"] = sum(sign * items[name] for sign, name in parse_criterion(criterion))
    return items


def summarise(items, criterion: str):
    """Mean of each metric per (model, k) plus the criterion; the chosen k per model and overall."""
    items = _with_criterion(items, criterion)
    order = {k: i for i, k in enumerate(dict.fromkeys(items["k"]))}
    table = (items.groupby(["model", "k"], sort=False)[list(TOPK_METRICS) + ["criterion"]].mean().reset_index())
    table.insert(2, "n_items", items.groupby(["model", "k"], sort=False).size().values)
    table["_o"] = table["k"].map(order)
    table = table.sort_values(["model", "_o"]).drop(columns="_o").reset_index(drop=True)
    best_per_model = {m: g.loc[g["criterion"].idxmax(), "k"] for m, g in table.groupby("model", sort=False)}
    overall = table.groupby("k", sort=False)["criterion"].mean()
    return table, best_per_model, overall.idxmax(), overall


def per_query(items, model: str | None, k, metric: str) -> dict[str, float]:
    """Per-query mean of a metric at k, for one model (or, with model None, the mean over models of each
    query's per-model means)."""
    sel = items[items["k"] == k]
    if model is not None:
        sel = sel[sel["model"] == model]
        return {str(q): float(v) for q, v in sel.groupby("qid")[metric].mean().items()}
    per_model = sel.groupby(["model", "qid"])[metric].mean().reset_index()
    return {str(q): float(v) for q, v in per_model.groupby("qid")[metric].mean().items()}


def intervals(items, criterion: str, seed: int, n_resamples: int = 1000) -> list[dict]:
    """Per (model, k), and per k over models ('all models'): every metric and the criterion as {mean, ci_low,
    ci_high, n_queries} over queries."""
    from bench.evaluate.faithfulness import query_mean_ci

    items = _with_criterion(items, criterion)
    out = []
    ks = list(dict.fromkeys(items["k"]))
    for model in [*dict.fromkeys(items["model"]), None]:
        for k in ks:
            row = {"model": model or "all models", "k": k}
            for metric in [*TOPK_METRICS, "criterion"]:
                means = per_query(items, model, k, metric)
                row[metric] = query_mean_ci(list(means.values()), list(means), seed, n_resamples)
            out.append(row)
    return out


def neighbour_tests(items, criterion: str, chosen: dict, seed: int, test: str = "t-test", alpha: float = 0.05
                    ) -> list[dict]:
    """Is the chosen k distinguishable from its neighbours in the ks list? Per model (and over models: key
    None -> 'all models'), the per-query criterion at the chosen k against each neighbour's, paired over
    queries, Holm-corrected within that model's (at most two) comparisons."""
    from bench.evaluate.faithfulness import paired_over_queries
    from bench.evaluate.significance import holm

    items = _with_criterion(items, criterion)
    ks = list(dict.fromkeys(items["k"]))
    out = []
    for model, k in chosen.items():
        i = ks.index(k)
        rows = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(ks):
                a, b = per_query(items, model, k, "criterion"), per_query(items, model, ks[j], "criterion")
                rows.append({"model": model or "all models", "chosen_k": k, "neighbour_k": ks[j],
                             **paired_over_queries(a, b, seed, test)})
        for r, adjusted in zip(rows, holm([r["p_value"] for r in rows]) if rows else []):
            r["p_holm"] = adjusted
            r["distinguishable"] = bool(adjusted < alpha)
        out += rows
    return out


def _cell(c: dict) -> str:
    from bench.explain.summary import fmt_interval

    return fmt_interval(c)


def write_topk(p, items) -> dict[str, Path]:
    from bench.artifacts import write_json_atomic, write_text_atomic
    from bench.provenance import stamp

    cfg: TopKConfig = p.exp.tune.topk
    rep = p.exp.report
    table, best_per_model, chosen, overall = summarise(items, cfg.criterion)
    seed = p.exp.seed
    cis = intervals(items, cfg.criterion, seed, rep.bootstrap_resamples or 1000)
    tests = neighbour_tests(items, cfg.criterion, {**best_per_model, None: chosen}, seed, rep.test, rep.alpha)
    out = p.out_dir
    out.mkdir(parents=True, exist_ok=True)
    prov = stamp(p.exp.hash(), p.exp.seed, {d.name: d.checksum for d in p.datasets()})
    paths = {"csv": out / "topk.csv", "json": out / "topk.json", "md": out / "topk.md", "png": out / "topk.png"}
    flat = table.copy()
    ci_of = {(r["model"], r["k"]): r for r in cis}
    for metric in [*TOPK_METRICS, "criterion"]:
        for part in ("ci_low", "ci_high"):
            flat[f"{metric}_{part}"] = [ci_of[(m, k)][metric][part] for m, k in zip(flat["model"], flat["k"])]
    flat["n_queries"] = [ci_of[(m, k)]["criterion"]["n_queries"] for m, k in zip(flat["model"], flat["k"])]
    write_text_atomic(paths["csv"], flat.to_csv(index=False, float_format="%.6f"))
    ecfg = trial_explain_cfg(_explain_cfg(p))
    columns = ["model", "k", "items", *TOPK_METRICS, "criterion"]
    site_rows = [[r["model"], str(r["k"]), int(table[(table["model"] == r["model"]) & (table["k"] == r["k"])]
                                                ["n_items"].sum()) if r["model"] != "all models" else "",
                  *[_cell(r[m]) for m in [*TOPK_METRICS, "criterion"]]] for r in cis]
    legend = (f"Criterion {cfg.criterion}; mean of per-query means [95 % bootstrap interval resampling queries]; "
              f"chosen k = {chosen} overall. Neighbour tests: paired {rep.test} over queries, Holm per model.")
    write_json_atomic(paths["json"], {
        "title": f"SHAP top-k ablation: {p.exp.name}", "legend": legend, "criterion": cfg.criterion,
        "chosen_k": chosen, "chosen_k_per_model": best_per_model, "rows": table.to_dict(orient="records"),
        "intervals": cis, "neighbour_tests": tests, "explainer": ecfg.primary,
        "table": {"columns": columns, "rows": site_rows}, "provenance": prov})
    lines = [f"# Top-k ablation: {p.exp.name}", "",
             f"Criterion: `{cfg.criterion}` (p = sigmoid(score)). **Chosen k = {chosen}** (criterion averaged over "
             "models: " + ", ".join(f"k={k}: {v:.4f}" for k, v in overall.items()) + ").", "",
             "Chosen k per model: " + ", ".join(f"{m}: {k}" for m, k in best_per_model.items()) + ".", "",
             f"The explain stage's primary explainer ({ecfg.primary}) once per item (words, "
             f"removal={ecfg.removal}{f', nsamples={ecfg.nsamples}' if ecfg.primary == 'kernel_shap' else ''}); "
             f"every k reuses those attributions. {cfg.max_queries} queries x top {cfg.top_items} item(s) per model. "
             "Every cell: mean of per-query means [95 % percentile bootstrap interval resampling queries].",
             "", "| model | k | items | " + " | ".join(TOPK_METRICS) + " | criterion |",
             "|---|---|---|" + "---|" * (len(TOPK_METRICS) + 1)]
    for r, site in zip(cis, site_rows):
        best = best_per_model.get(r["model"], chosen if r["model"] == "all models" else None)
        mark = " (best)" if r["k"] == best else ""
        lines.append(f"| {r['model']} | {r['k']}{mark} | {site[2]} | " + " | ".join(site[3:]) + " |")
    lines += ["", f"Is the chosen k distinguishable from its neighbours? Per-query criterion, paired {rep.test} over "
              "queries, Holm-corrected within each model's neighbour comparisons:", "",
              "| model | chosen k | neighbour k | queries | chosen - neighbour [95% CI] | p | p Holm | "
              "distinguishable |",
              "|---|---|---|---|---|---|---|---|"]
    for t in tests:
        delta = _cell({"mean": t["delta"], "ci_low": t["ci_low"], "ci_high": t["ci_high"]})
        lines.append(f"| {t['model']} | {t['chosen_k']} | {t['neighbour_k']} | {t['n_queries']} | {delta} | "
                     f"{t['p_value']:.3g} | {t['p_holm']:.3g} | {'yes' if t['distinguishable'] else 'no'} |")
    lines += ["", f"config hash {prov.get('config_hash', '')}, seed {p.exp.seed}", ""]
    write_text_atomic(paths["md"], "\n".join(lines))
    _plot(cis, paths["png"], cfg.criterion)
    log.info("topk: chosen k=%s -> %s", chosen, paths["md"])
    return paths


def _plot(cis: list[dict], path: Path, criterion: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.artifacts import atomic_path

    metrics = list(TOPK_METRICS) + ["criterion"]
    ks = list(dict.fromkeys(r["k"] for r in cis))
    x = {k: i for i, k in enumerate(ks)}
    models = list(dict.fromkeys(r["model"] for r in cis))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), dpi=90)
    for ax, metric in zip(axes.flat, metrics):
        for model in models:
            rows = [r for r in cis if r["model"] == model and r[metric]["mean"] is not None]
            xs = [x[r["k"]] for r in rows]
            means = [r[metric]["mean"] for r in rows]
            lo = [r[metric]["ci_low"] if r[metric]["ci_low"] is not None else r[metric]["mean"] for r in rows]
            hi = [r[metric]["ci_high"] if r[metric]["ci_high"] is not None else r[metric]["mean"] for r in rows]
            style = {"linestyle": "--", "color": "black"} if model == "all models" else {}
            line, = ax.plot(xs, means, marker="o", label=model, **style)
            ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("k (attribution words)")
        ax.set_title(criterion if metric == "criterion" else metric, fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Top-k ablation: each metric against k (mean, 95 % bootstrap band over queries), one curve per model")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
