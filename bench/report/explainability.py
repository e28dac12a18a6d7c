"""Table "explainability per training method": `explainability.{md,csv,json}` (and on the site).

Rows: the training methods of the explained trained cells (SFT, RM, DPO, PPO, GRPO, RLOO, contrastive,
r2r-*, in the grid's order), then `zero-shot` (the untrained systems explained beside them) for
reference. Per row, from the primary explainer of each cell's explained items:
- AOPC comprehensiveness and sufficiency (ERASER bins unless `explain.aopc_bins: ferret`): item values
  averaged per query over all of the method's cells, then the mean over queries with a seeded 95 %
  percentile bootstrap interval resampling queries; the method's cells' mean ranking measure
  (`report.ci_measure`, default nDCG@10) on the same queries, with its interval likewise;
- paired tests between every two methods over the queries both have (t-test or Wilcoxon as
  `report.test`), Holm-corrected per metric.
Across cells (one point per trained cell): the correlation between the cell's ranking measure and its
faithfulness (AOPC comprehensiveness, and sufficiency), given two ways: Spearman's rho with a percentile
bootstrap interval resampling CELLS (2000 resamples, seeded), and Pearson's r with the Fisher z interval
(r +- 1.96 / sqrt(n - 3) on atanh(r)). With fewer than 4 cells no interval is given; with random-init
models the scores say that the harness works, not which method explains better.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.evaluate import faithfulness as fm
from bench.explain.summary import fmt_interval, query_key

METRICS = {"aopc_comprehensiveness": "AOPC comp", "aopc_sufficiency": "AOPC suff"}
ZERO_SHOT = "zero-shot"


def _method_order(methods: list[str]) -> list[str]:
    from bench.train.config import METHOD_ORDER

    return sorted(methods, key=lambda m: (m == ZERO_SHOT, METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m))


def _item_means(items: list[dict], metric: str) -> dict[str, float]:
    """Per-query means of the primary explainer's metric over these items (queries as dataset/qid)."""
    values, qids = [], []
    for it in items:
        r = (it.get("explainers") or {}).get(it.get("primary") or "")
        if not r or r.get("status") != "ok":
            continue
        v = ((r.get("metrics") or {}).get("aopc") or {}).get(metric)
        if v is not None and math.isfinite(float(v)):
            values.append(float(v))
            qids.append(query_key(it))
    return fm.per_query_means(values, qids)


def _pooled(per_cell: list[dict[str, float]]) -> dict[str, float]:
    """Per query, the mean over the cells that have it."""
    acc: dict[str, list[float]] = {}
    for cell in per_cell:
        for q, v in cell.items():
            acc.setdefault(q, []).append(v)
    return {q: float(np.mean(v)) for q, v in acc.items()}


def _ci(per_query: dict[str, float], seed: int, n_resamples: int) -> dict:
    return fm.query_mean_ci(list(per_query.values()), list(per_query), seed, n_resamples)


def spearman_bootstrap(x, y, seed: int, n_resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Spearman's rho of paired cell values with a percentile bootstrap interval resampling cells."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {"method": "spearman", "interval": f"percentile bootstrap over cells ({n_resamples} resamples, seed {seed})",
           "n_cells": int(n), "rho": None, "ci_low": None, "ci_high": None, "p_value": None}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = stats.spearmanr(x, y)
    out["rho"], out["p_value"] = float(res.statistic), float(res.pvalue)
    if n < 4:
        return out
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue  # a resample with one distinct value has no rank correlation
        draws.append(stats.spearmanr(x[idx], y[idx]).statistic)
    if draws:
        alpha = (1 - confidence) / 2
        out["ci_low"], out["ci_high"] = (float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)))
        out["resamples_used"] = len(draws)
    return out


def pearson_fisher(x, y, confidence: float = 0.95) -> dict:
    """Pearson's r with the Fisher z interval: tanh(atanh(r) +- z_{1-a/2} / sqrt(n - 3))."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {"method": "pearson", "interval": "Fisher z (normal approximation on atanh(r))", "n_cells": int(n),
           "r": None, "ci_low": None, "ci_high": None, "p_value": None}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = stats.pearsonr(x, y)
    r = float(np.clip(res.statistic, -0.999999, 0.999999))
    out["r"], out["p_value"] = float(res.statistic), float(res.pvalue)
    if n > 3:
        z, half = math.atanh(r), stats.norm.ppf(0.5 + confidence / 2) / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = math.tanh(z - half), math.tanh(z + half)
    return out


def explainability(items: list[dict], per_query: pd.DataFrame, systems: dict, measure: str, seed: int,
                   test: str = "t-test", n_resamples: int = 1000) -> dict:
    """The table's content (see the module docstring)."""
    by_system: dict[str, list[dict]] = {}
    for it in items:
        by_system.setdefault(it["system"], []).append(it)

    def method_of(system: str) -> str | None:
        info = systems.get(system)
        if info is None:
            return None
        if info.kind in ("trained", "tuned"):
            return info.method or info.kind
        return ZERO_SHOT if info.kind == "zero-shot" else None

    pq = per_query[per_query["measure"] == measure]
    cells = []
    for system, mine in by_system.items():
        method = method_of(system)
        if method is None:
            continue
        explained = {query_key(it) for it in mine}
        rows = pq[pq["system"] == system]
        ranking = {f"{d}/{q}": float(v) for d, q, v in zip(rows["dataset"], rows["qid"].astype(str), rows["value"])
                   if f"{d}/{q}" in explained}
        faith = {m: _item_means(mine, m) for m in METRICS}
        info = systems[system]
        cells.append({"system": system, "method": method, "family": info.family, "kind": info.kind,
                      "items": len(mine), "queries": len(explained), measure: ranking, **faith,
                      f"mean_{measure}": float(np.mean(list(ranking.values()))) if ranking else None,
                      **{f"mean_{m}": (float(np.mean(list(faith[m].values()))) if faith[m] else None)
                         for m in METRICS}})
    methods = _method_order(list(dict.fromkeys(c["method"] for c in cells)))
    rows, groups = [], {m: {} for m in METRICS}
    for method in methods:
        mine = [c for c in cells if c["method"] == method]
        row = {"method": method, "cells": [c["system"] for c in mine], "n_cells": len(mine),
               "items": sum(c["items"] for c in mine)}
        for m in METRICS:
            pooled = _pooled([c[m] for c in mine])
            groups[m][method] = pooled
            row[m] = _ci(pooled, seed, n_resamples)
        row[measure] = _ci(_pooled([c[measure] for c in mine]), seed, n_resamples)
        rows.append(row)
    comparisons = {m: fm.compare_groups({k: v for k, v in g.items() if v}, seed, test)
                   if sum(bool(v) for v in g.values()) > 1 else [] for m, g in groups.items()}
    trained = [c for c in cells if c["kind"] in ("trained", "tuned") and c[f"mean_{measure}"] is not None]
    correlation = {}
    for m in METRICS:
        pts = [(c[f"mean_{measure}"], c[f"mean_{m}"]) for c in trained if c[f"mean_{m}"] is not None]
        x, y = [p[0] for p in pts], [p[1] for p in pts]
        correlation[m] = {"spearman": spearman_bootstrap(x, y, seed), "pearson": pearson_fisher(x, y)}
    return {"measure": measure, "rows": rows, "cells": [{k: v for k, v in c.items() if k not in (measure, *METRICS)}
                                                        for c in cells],
            "comparisons": comparisons, "correlation": correlation, "seed": seed, "test": test,
            "resampled": "queries (rows); cells (Spearman's interval)"}


def _corr_text(c: dict) -> str:
    s, p = c["spearman"], c["pearson"]

    def part(v, lo, hi):
        if v is None:
            return "n/a"
        return f"{v:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else " [no interval]")

    return (f"Spearman rho {part(s['rho'], s['ci_low'], s['ci_high'])} (bootstrap over cells), Pearson r "
            f"{part(p['r'], p['ci_low'], p['ci_high'])} (Fisher z), {s['n_cells']} cells")


def write_explainability(items: list[dict], per_query: pd.DataFrame, systems: dict, exp, out_dir: Path,
                         provenance: dict) -> dict[str, Path]:
    measure = exp.report.ci_measure if exp.report.ci_measure in set(per_query["measure"]) else \
        str(per_query["measure"].iloc[0])
    doc = explainability(items, per_query, systems, measure, exp.seed, exp.report.test,
                         exp.report.bootstrap_resamples or 1000)
    cfg = exp.explain
    primary = cfg.primary
    columns = ["method", "cells", "items", f"{METRICS['aopc_comprehensiveness']} ↑ [95% CI]",
               f"{METRICS['aopc_sufficiency']} ↓ [95% CI]", f"{measure} [95% CI]"]
    table_rows = [[r["method"], r["n_cells"], r["items"], fmt_interval(r["aopc_comprehensiveness"]),
                   fmt_interval(r["aopc_sufficiency"]), fmt_interval(r[measure])] for r in doc["rows"]]
    legend = (f"Primary explainer {primary}, AOPC with {cfg.aopc_bins} bins, p = sigmoid(score); each row pools the "
              f"method's explained cells per query; mean of per-query means [95 % percentile bootstrap interval "
              f"resampling queries]. Correlation across trained cells of {measure} and faithfulness: "
              + "; ".join(f"{METRICS[m]}: {_corr_text(c)}" for m, c in doc["correlation"].items()) + ".")
    md = [f"# Explainability per training method: {exp.name}", "", legend, "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(v) for v in row) + " |" for row in table_rows]
    sig = [(m, r) for m, rs in doc["comparisons"].items() for r in rs]
    if sig:
        md += ["", f"Paired tests between methods over shared queries ({doc['test']}, Holm per metric):", "",
               "| metric | a | b | queries | a - b [95% CI] | p | p Holm |", "|---|---|---|---|---|---|---|"]
        for m, r in sig:
            delta = fmt_interval({"mean": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
            md.append(f"| {METRICS[m]} | {r['a']} | {r['b']} | {r['n_queries']} | {delta} | {r['p_value']:.3g} | "
                      f"{r['p_holm']:.3g}{' *' if r['significant'] else ''} |")
    md += ["", "Cells (one point each in the correlation):", "",
           f"| cell | method | family | items | {measure} | AOPC comp | AOPC suff |", "|---|---|---|---|---|---|---|"]
    for c in doc["cells"]:
        f = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        md.append(f"| {c['system']} | {c['method']} | {c['family']} | {c['items']} | {f(c[f'mean_{measure}'])} | "
                  f"{f(c['mean_aopc_comprehensiveness'])} | {f(c['mean_aopc_sufficiency'])} |")
    md += ["", f"config {provenance.get('config_hash')} · seed {provenance.get('seed')} · "
           f"commit {str(provenance.get('git_commit'))[:10]}", ""]
    out_dir = Path(out_dir)
    paths = {"md": out_dir / "explainability.md", "csv": out_dir / "explainability.csv",
             "json": out_dir / "explainability.json"}
    write_text_atomic(paths["md"], "\n".join(md))
    flat = []
    for r in doc["rows"]:
        row = {"method": r["method"], "n_cells": r["n_cells"], "items": r["items"], "cells": " ".join(r["cells"])}
        for key in ("aopc_comprehensiveness", "aopc_sufficiency", measure):
            for part in ("mean", "ci_low", "ci_high", "n_queries"):
                row[f"{key}_{part}"] = r[key].get(part)
        flat.append(row)
    write_text_atomic(paths["csv"], pd.DataFrame(flat).to_csv(index=False, float_format="%.6f"))
    write_json_atomic(paths["json"], {"title": f"Explainability per training method: {exp.name}", "legend": legend,
                                      **doc, "primary_explainer": primary, "aopc_bins": cfg.aopc_bins,
                                      "table": {"columns": columns, "rows": table_rows}, "provenance": provenance})
    return paths
