"""Explanation quality of a run, with intervals: what `explanations.json`, the leaderboard's faithfulness
columns, the site's explainer table and the explainability-per-method table read.

Every mean is the mean of per-query means with a seeded 95 % percentile bootstrap interval that
resamples queries (`bench.evaluate.faithfulness.query_mean_ci`); a query is named `<dataset>/<qid>` so
two data sources never share one. Comparisons (two explainers of a system, two systems' primary
explainer) are paired over the queries both have, Holm-corrected within a metric's family
(`bench.evaluate.faithfulness.compare_groups`).

Per system:
- `explainers`: `summarize_items` of its items: per explainer, AOPC comprehensiveness / sufficiency
  (ERASER bins, or ferret's), NAOPC, tau with leave-one-out, stability, model evaluations and seconds
  per item; the paired tests between its explainers; the agreement matrix (Kendall tau between two
  explainers' values);
- `topk`: the primary explainer's comprehensiveness@k, sufficiency@k and random-k comprehensiveness
  for every k of `explain.ks` (the item's top-k words removed / kept alone / k random ones removed);
- `grounding`: the share of the top-k words the with- / without-attribution explanation mentions;
- `listwise`: RankingSHAP's validity@k / completeness@k and cost per query (`summarize_rankings`).
Across systems: `system_comparisons` (the primary explainer's metrics, paired over shared queries).
"""
from __future__ import annotations

import math
from typing import Sequence

from bench.evaluate import faithfulness as fm

# Leaderboard columns (with intervals) from the primary explainer: metric of `summarize_items` -> header
AOPC_COLUMNS = {"aopc_comprehensiveness": "AOPC comp", "aopc_sufficiency": "AOPC suff"}
SYSTEM_METRICS = ("aopc_comprehensiveness", "aopc_sufficiency", "naopc_comprehensiveness", "naopc_sufficiency",
                  "tau_loo")
EXPLAINABLE = ("ok", "k_clamped")


def query_key(item: dict) -> str:
    return f"{item.get('dataset', '')}/{item.get('qid')}"


def _keyed(items: Sequence[dict]) -> list[dict]:
    """Items whose `qid` is `<dataset>/<qid>` (for the library's per-query aggregation)."""
    return [{**it, "qid": query_key(it)} for it in items]


def erasure_values(items: Sequence[dict], k: int) -> dict[str, tuple[list[float], list[str]]]:
    """comprehensiveness@k, sufficiency@k, random_comprehensiveness@k of each explained item: (values, qids)."""
    from bench.evaluate.explanations import erasure_drops

    out: dict[str, tuple[list[float], list[str]]] = {m: ([], []) for m in
                                                      ("comprehensiveness", "sufficiency", "random_comprehensiveness")}
    for it in items:
        erased = (it.get("erasure") or {}).get(str(k))
        if it.get("status") not in EXPLAINABLE or not erased or it.get("full_score") is None:
            continue
        for m, v in erasure_drops(it["full_score"], erased).items():
            out[m][0].append(v)
            out[m][1].append(query_key(it))
    return out


def grounding_values(items: Sequence[dict], variant: str) -> tuple[list[float], list[str]]:
    from bench.evaluate.explanations import explanation_grounding

    values, qids = [], []
    for it in items:
        text = ((it.get("explanations") or {}).get(variant) or {}).get("text")
        g = explanation_grounding([t["word"] for t in it.get("topk", [])], text)
        if g is not None:
            values.append(g)
            qids.append(query_key(it))
    return values, qids


def system_summary(items: Sequence[dict], rankings: Sequence[dict], ks: Sequence[int], seed: int,
                   test: str = "t-test", n_resamples: int = 1000) -> dict:
    """One system's explanation quality (see the module docstring)."""
    primary = next((it.get("primary") for it in items if it.get("primary")), None)
    explained = [it for it in items if it.get("explainers")]
    out: dict = {"primary": primary, "items": len(items),
                 "explained": sum(it.get("status") in EXPLAINABLE for it in items),
                 "status": {s: sum(it.get("status") == s for it in items) for s in sorted({str(it.get("status"))
                                                                                            for it in items})},
                 "explainers": fm.summarize_items(_keyed(explained), seed, test, n_resamples=n_resamples)
                 if explained else {}, "topk": {}, "grounding": {}}
    for k in ks:
        out["topk"][str(k)] = {m: fm.query_mean_ci(v, q, seed, n_resamples)
                               for m, (v, q) in erasure_values(items, k).items()}
    for variant in ("with", "without"):
        v, q = grounding_values(items, variant)
        if v:
            out["grounding"][variant] = fm.query_mean_ci(v, q, seed, n_resamples)
    if rankings:
        out["listwise"] = fm.summarize_rankings(_keyed(rankings), seed, n_resamples)
    return out


def per_query(items: Sequence[dict], explainer: str, metric: str) -> dict[str, float]:
    return fm.per_query_means(*fm.item_values(_keyed(items), explainer, metric))


def system_comparisons(items_by_system: dict[str, list[dict]], seed: int, test: str = "t-test") -> dict:
    """Every two systems on their primary explainer's metrics, paired over the queries both have, Holm-corrected
    per metric."""
    out = {}
    for metric in SYSTEM_METRICS:
        groups = {}
        for system, items in items_by_system.items():
            primary = next((it.get("primary") for it in items if it.get("primary")), None)
            if primary:
                means = per_query(items, primary, metric)
                if means:
                    groups[system] = means
        out[metric] = fm.compare_groups(groups, seed, test) if len(groups) > 1 else []
    return out


def interval_columns(summaries: dict[str, dict], k: int, ks: Sequence[int]) -> dict[str, dict[str, dict]]:
    """Leaderboard columns with intervals: column -> system -> {mean, ci_low, ci_high, n_queries, n_items}:
    comp@k and suff@k (k = explain.k if it is one of explain.ks, else the largest), the primary explainer's
    AOPC comp / suff, grounding@k of the with-attribution explanations."""
    cols: dict[str, dict[str, dict]] = {}
    k_faith = k if k in ks else max(ks, default=k)
    for system, s in summaries.items():
        top = s.get("topk", {}).get(str(k_faith))
        if top and top["comprehensiveness"]["mean"] is not None:
            cols.setdefault(f"comp@{k_faith}", {})[system] = top["comprehensiveness"]
            cols.setdefault(f"suff@{k_faith}", {})[system] = top["sufficiency"]
        primary = (s.get("explainers") or {}).get("explainers", {}).get(s.get("primary"), {})
        for metric, col in AOPC_COLUMNS.items():
            cell = primary.get(metric)
            if cell and cell["mean"] is not None:
                cols.setdefault(col, {})[system] = cell
        g = s.get("grounding", {}).get("with")
        if g and g["mean"] is not None:
            cols.setdefault(f"grounding@{k}", {})[system] = g
    return cols


def fmt_interval(cell: dict | None, digits: int = 4) -> str:
    """'0.1234 [0.1000, 0.1500]' (a mean with its interval); '–' for none."""
    if not cell or cell.get("mean") is None or (isinstance(cell["mean"], float) and math.isnan(cell["mean"])):
        return "–"
    lo, hi = cell.get("ci_low"), cell.get("ci_high")
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else " [n/a]"
    return f"{cell['mean']:.{digits}f}{ci}"


def benchmark_summary(metrics: dict, title: str) -> dict:
    """summary.json of the explainer benchmark: one entry per (system, explainer) with its items, AOPC
    comprehensiveness and sufficiency (and NAOPC, tau with leave-one-out, stability) as {mean, ci_low, ci_high}
    over queries, its model rows per item (forward passes; backward ones apart) and seconds per item; RankingSHAP
    per system; `ground_truth`: each explainer's largest absolute error on the analytic test scorer (when the run
    computed it, `explain.ground_truth`)."""
    def cell(c: dict | None) -> dict:
        c = c or {}
        return {"mean": c.get("mean"), "ci_low": c.get("ci_low"), "ci_high": c.get("ci_high"),
                "n_queries": c.get("n_queries", 0)}

    entries, listwise, schemes = [], {}, set()
    for system, s in (metrics.get("explainers") or {}).items():
        ex = s.get("explainers") or {}
        schemes.update(ex.get("aopc_scheme") or [])
        for name, cells in (ex.get("explainers") or {}).items():
            entries.append({"name": name, "system": system, "primary": name == s.get("primary"),
                            "items": (cells.get("aopc_comprehensiveness") or {}).get("n_items", 0),
                            "queries": (cells.get("aopc_comprehensiveness") or {}).get("n_queries", 0),
                            "comprehensiveness": cell(cells.get("aopc_comprehensiveness")),
                            "sufficiency": cell(cells.get("aopc_sufficiency")),
                            "naopc_comprehensiveness": cell(cells.get("naopc_comprehensiveness")),
                            "naopc_sufficiency": cell(cells.get("naopc_sufficiency")),
                            "tau_loo": cell(cells.get("tau_loo")), "stability": cell(cells.get("stability")),
                            "forward_passes_per_item": (cells.get("evaluations") or {}).get("mean"),
                            "backward_passes_per_item": (cells.get("backward_evaluations") or {}).get("mean"),
                            "seconds_per_item": (cells.get("seconds") or {}).get("mean")})
        if s.get("listwise"):
            listwise[system] = s["listwise"]
    truth = metrics.get("ground_truth") or {}
    return {"title": title, "explainers": entries, "listwise": listwise,
            "ground_truth": {name: g["max_abs_error"] for name, g in truth.items()},
            "ground_truth_detail": truth,
            "metrics": {"comprehensiveness": "AOPC of p(x) - p(x without the top-ranked item words)",
                        "sufficiency": "AOPC of p(x) - p(only the top-ranked item words, the query kept)",
                        "aopc_bins": sorted(schemes), "p": "sigmoid(score)"},
            "interval": metrics.get("intervals_note", ""),
            "comparisons": {system: (s.get("explainers") or {}).get("comparisons", {})
                            for system, s in (metrics.get("explainers") or {}).items()}}
