"""Faithfulness of word attributions, and their aggregation over queries.

Pure functions: they take attributions and model scores (or a function that scores word-removal
sets) and return numbers; the model calls happen in `bench.explain.explainers`. Probabilities are
p = sigmoid(score) (`bench.evaluate.explanations.sigmoid`, the project's one sigmoid).

Per item and explainer (definitions and sources):
- ERASER (DeYoung et al. 2020): comprehensiveness = p(x) - p(x \\ r), sufficiency = p(x) - p(r),
  r = the top-k words. AOPC = the mean over bins. ERASER's bins are 1, 5, 10, 20, 50 % of the
  words (`rationale_benchmark/metrics.py`, `--aopc_thresholds`); the benchmark only consumes the
  scores, and its baseline models (successar/Eraser-Benchmark-Baseline-Models, linked from the
  ERASER README) round a bin up: k = ceil(fraction * n), so every bin removes at least one word;
  bins are kept as they are, duplicates included, and words are ranked by signed value.
- ferret (g8a9/ferret, `evaluators/faithfulness_measures.py`): bins 10 %, 20 %, ..., 100 %,
  k = int(fraction * n) (floor; bins of 0 words are skipped), only positively attributed words
  enter a rationale, and a bin whose rationale equals the previous one is skipped. Its AOPC is not
  ERASER's: every output says which scheme made it.
- NAOPC (Edin et al., ACL 2025, JoakimEdin/naopc): the AOPC of a full removal order,
  (1/n) sum_{k=1..n} [p(x) - p(x without the first k words of the order)], normalised by the
  lowest and highest AOPC any order reaches on that item: (AOPC - lower) / (upper - lower).
  Sufficiency uses the reversed order (least important word removed first) and the same bounds,
  since reversing an order is again an order. Bounds are exact (every subset scored, best chain by
  dynamic programming) up to `exact_max_words` words; above that a beam search over removal sets
  (their `bound_approximation_methods.py`, beam width B, about B n^2 / 2 rows per direction)
  gives an inner estimate, widened by every order that was actually scored (so 0 <= NAOPC <= 1).
- Kendall tau between attributions and leave-one-out drops (ferret's `taucorr_loo`); stability
  (tau between two seeds of one explainer); agreement (tau between two explainers).
- Listwise (RankingSHAP, Heuss et al. 2024): rank similarity (Kendall tau) of the original ranking
  with the ranking that keeps only the explanation's top words (validity, higher is better) or
  that removes them (completeness, lower is better).

Aggregation: item values are averaged per query first, then a seeded percentile bootstrap over
queries gives the 95 % interval (`significance.mean_ci`); two explainers (or systems) are compared
with a paired test over queries, Holm-corrected within a family of comparisons.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
from scipy import stats

from bench.evaluate.explanations import sigmoid
from bench.evaluate.significance import holm, mean_ci, paired_test

ERASER_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
FERRET_FRACTIONS = tuple(float(f) for f in np.arange(0.1, 1.1, 0.1))  # ferret's np.arange(0.1, 1.1, 0.1)
Scheme = Literal["eraser", "ferret"]

# scores of rows given as 0/1 removal masks (n_rows x n_words, 1 = removed) -> p(x) - p(x without them)
DropFunction = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------ rank correlation
def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall tau-b (scipy); NaN when either side is constant or has fewer than two entries."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"tau of vectors of different lengths: {len(a)} vs {len(b)}")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def rank_similarity(original: Sequence[float], perturbed: Sequence[float]) -> float:
    """Kendall tau between two score vectors of the same candidates; a constant ranking (every
    candidate tied) carries no order, and counts as 0 rather than NaN so RankingSHAP's value
    function is defined on every coalition."""
    tau = kendall_tau(original, perturbed)
    return 0.0 if math.isnan(tau) else tau


def tau_loo(values: Sequence[float], loo_drops: Sequence[float]) -> float:
    """ferret's taucorr_loo: Kendall tau between attributions and leave-one-out drops
    s(x) - s(x without word i). (The order of drops is the same on the score and the p scale.)"""
    return kendall_tau(values, loo_drops)


# ------------------------------------------------------------------------------ rationale bins
@dataclass(frozen=True)
class Bins:
    """Which top-ranked words each AOPC bin removes (indices into the eligible words)."""

    scheme: Scheme
    fractions: tuple[float, ...]  # the fraction of words each kept bin stands for
    sizes: tuple[int, ...]
    rationales: tuple[tuple[int, ...], ...]


def _descending(values: np.ndarray) -> np.ndarray:
    """Indices by value, largest first; ties broken by position (stable)."""
    return np.argsort(-np.asarray(values, float), kind="stable")


def eraser_bins(values: Sequence[float], fractions: Sequence[float] = ERASER_FRACTIONS) -> Bins:
    """ERASER: k = ceil(fraction * n) top words by signed value, every bin kept."""
    n = len(values)
    order = _descending(np.asarray(values, float))
    # round() first: 0.28 * 25 is 7.000000000000001 in floats, whose ceiling would be 8 (ERASER's own
    # fractions happen to be exact for every n, other fractions are not)
    sizes = tuple(min(n, math.ceil(round(f * n, 9))) for f in fractions) if n else ()
    return Bins("eraser", tuple(fractions) if n else (), sizes, tuple(tuple(int(i) for i in order[:k]) for k in sizes))


def ferret_bins(values: Sequence[float], fractions: Sequence[float] = FERRET_FRACTIONS) -> Bins:
    """ferret: k = int(fraction * n), positive words only, empty and repeated rationales skipped."""
    values = np.asarray(values, float)
    n = len(values)
    order = _descending(values)
    kept_f, sizes, rationales, previous = [], [], [], None
    for f in fractions:
        k = int(f * n)
        if k <= 0:
            continue
        top = tuple(int(i) for i in order[:k] if values[i] > 0)
        if not top or (previous is not None and set(top) == previous):
            continue
        previous = set(top)
        kept_f.append(float(f))
        sizes.append(len(top))
        rationales.append(top)
    return Bins("ferret", tuple(kept_f), tuple(sizes), tuple(rationales))


def make_bins(values: Sequence[float], scheme: Scheme) -> Bins:
    if scheme == "eraser":
        return eraser_bins(values)
    if scheme == "ferret":
        return ferret_bins(values)
    raise ValueError(f"unknown AOPC scheme {scheme!r}; expected 'eraser' or 'ferret'")


# ------------------------------------------------------------------------------ ERASER drops
def comprehensiveness(full_score: float, scores_without: Sequence[float]) -> np.ndarray:
    """p(x) - p(x without the rationale), one per bin (higher: the top words matter)."""
    return float(sigmoid(full_score)) - sigmoid(scores_without)


def sufficiency(full_score: float, scores_only: Sequence[float]) -> np.ndarray:
    """p(x) - p(the rationale alone), one per bin (lower: the top words suffice)."""
    return float(sigmoid(full_score)) - sigmoid(scores_only)


def aopc(drops: Sequence[float]) -> float:
    """Mean over bins (ERASER's AOPC; NaN for no bins)."""
    drops = np.asarray(drops, float)
    return float(drops.mean()) if drops.size else float("nan")


# ------------------------------------------------------------------------------ NAOPC
def prefix_masks(order: Sequence[int], n: int) -> np.ndarray:
    """Removal masks of the first 1..n words of `order` (n x n)."""
    masks = np.zeros((n, n), dtype=np.int8)
    for k, i in enumerate(order):
        masks[k:, i] = 1
    return masks


def order_aopc(order: Sequence[int], drop: DropFunction) -> float:
    """(1/n) sum_k [p(x) - p(x without the first k words of `order`)], k = 1..n."""
    n = len(order)
    return float(np.mean(drop(prefix_masks(order, n)))) if n else float("nan")


def _all_subsets(n: int) -> np.ndarray:
    """Every removal mask over n words, row s = the bits of s."""
    s = np.arange(2 ** n, dtype=np.int64)[:, None]
    return ((s >> np.arange(n)) & 1).astype(np.int8)


def exact_aopc_bounds(n: int, drop: DropFunction) -> tuple[float, float]:
    """(lowest, highest) AOPC over all n! orders, from the 2^n subset scores.

    best[S] = g(S) + max_{i in S} best[S - i] with g(S) = p(x) - p(x without S) is the best chain
    ending in S; the best order is the best chain ending in the full set (likewise for the lowest).
    """
    if n == 0:
        return float("nan"), float("nan")
    g = np.asarray(drop(_all_subsets(n)), float)
    best_hi = np.full(2 ** n, -np.inf)
    best_lo = np.full(2 ** n, np.inf)
    best_hi[0] = best_lo[0] = 0.0
    for s in range(1, 2 ** n):
        members = [s ^ (1 << i) for i in range(n) if s >> i & 1]
        best_hi[s] = g[s] + max(best_hi[m] for m in members)
        best_lo[s] = g[s] + min(best_lo[m] for m in members)
    full = 2 ** n - 1
    return float(best_lo[full] / n), float(best_hi[full] / n)


def beam_aopc_bounds(n: int, drop: DropFunction, beam_size: int) -> tuple[float, float]:
    """Edin et al.'s beam search: grow removal sets one word at a time, keep the `beam_size` sets
    with the highest (for the upper bound) and lowest (lower bound) cumulative drop. An inner
    estimate of the exact bounds: every value it returns is reached by a real order."""
    if n == 0:
        return float("nan"), float("nan")
    bounds = []
    for sign in (-1.0, 1.0):  # -1: lowest AOPC, +1: highest
        beam: dict[frozenset, float] = {frozenset(): 0.0}
        for _ in range(n):
            candidates = {}
            for removed, total in beam.items():
                for i in range(n):
                    if i not in removed:
                        grown = removed | {i}
                        candidates.setdefault(grown, []).append(total)
            sets = list(candidates)
            masks = np.zeros((len(sets), n), dtype=np.int8)
            for r, s in enumerate(sets):
                masks[r, list(s)] = 1
            g = np.asarray(drop(masks), float)
            # two chains reaching the same set continue identically: keep the better one
            scored = {s: g[r] + (max(candidates[s]) if sign > 0 else min(candidates[s])) for r, s in enumerate(sets)}
            ranked = sorted(scored.items(), key=lambda kv: -sign * kv[1])[:beam_size]
            beam = dict(ranked)
        (total,) = beam.values()
        bounds.append(total / n)
    return bounds[0], bounds[1]


def normalised_aopc(value: float, lower: float, upper: float) -> float:
    """(AOPC - lower) / (upper - lower); NaN when every order gives the same AOPC."""
    if not upper > lower:
        return float("nan")
    return float((value - lower) / (upper - lower))


# ------------------------------------------------------------------------------ aggregation over queries
def per_query_means(values: Sequence[float], qids: Sequence[str]) -> dict[str, float]:
    """Mean of the (finite) item values of each query; queries with none are left out."""
    if len(values) != len(qids):
        raise ValueError(f"{len(values)} values for {len(qids)} query ids")
    sums: dict[str, list[float]] = {}
    for v, q in zip(values, qids):
        if v is not None and math.isfinite(float(v)):
            sums.setdefault(str(q), []).append(float(v))
    return {q: float(np.mean(v)) for q, v in sums.items()}


def query_mean_ci(values: Sequence[float], qids: Sequence[str], seed: int, n_resamples: int = 1000,
                  confidence: float = 0.95) -> dict:
    """{mean, ci_low, ci_high, n_queries, n_items}: the mean of per-query means, with a seeded
    percentile bootstrap interval that resamples queries (not items)."""
    means = per_query_means(values, qids)
    x = np.array(list(means.values()), float)
    n_items = int(sum(1 for v in values if v is not None and math.isfinite(float(v))))
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n_queries": 0, "n_items": 0}
    low, high = mean_ci(x, seed, n_resamples, confidence)
    return {"mean": float(x.mean()), "ci_low": None if math.isnan(low) else low,
            "ci_high": None if math.isnan(high) else high, "n_queries": int(x.size), "n_items": n_items}


def paired_over_queries(a: Mapping[str, float], b: Mapping[str, float], seed: int,
                        test: Literal["t-test", "wilcoxon"] = "t-test", n_resamples: int = 1000) -> dict:
    """Paired test of two per-query mean dicts on the queries both have; delta = a - b with its
    bootstrap interval over those queries."""
    shared = sorted(set(a) & set(b))
    x = np.array([a[q] for q in shared], float)
    y = np.array([b[q] for q in shared], float)
    statistic, p = paired_test(x, y, test)
    low, high = mean_ci(x - y, seed, n_resamples) if shared else (float("nan"), float("nan"))
    return {"n_queries": len(shared), "mean_a": float(x.mean()) if shared else None,
            "mean_b": float(y.mean()) if shared else None, "delta": float((x - y).mean()) if shared else None,
            "ci_low": None if math.isnan(low) else low, "ci_high": None if math.isnan(high) else high,
            "statistic": statistic, "p_value": p, "test": test}


def compare_groups(per_query: Mapping[str, Mapping[str, float]], seed: int,
                   test: Literal["t-test", "wilcoxon"] = "t-test", baseline: str | None = None,
                   alpha: float = 0.05) -> list[dict]:
    """Every pair of groups (or every group against `baseline`), paired over queries, with Holm's
    correction over the family. `per_query`: group (explainer or system) -> qid -> mean value."""
    names = list(per_query)
    if baseline is not None:
        if baseline not in per_query:
            raise ValueError(f"baseline {baseline!r} is not one of {names}")
        pairs = [(n, baseline) for n in names if n != baseline]
    else:
        pairs = list(combinations(names, 2))
    rows = [{"a": a, "b": b, **paired_over_queries(per_query[a], per_query[b], seed, test)} for a, b in pairs]
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows]) if rows else []):
        row["p_holm"] = adjusted
        row["significant"] = bool(adjusted < alpha)
    return rows


# ------------------------------------------------------------------------------ explain_pair results -> tables
ITEM_METRICS = {  # name -> path into an explainer's result of `bench.explain.explainers.explain_pair`
    "aopc_comprehensiveness": ("metrics", "aopc", "aopc_comprehensiveness"),
    "aopc_sufficiency": ("metrics", "aopc", "aopc_sufficiency"),
    "naopc_comprehensiveness": ("metrics", "naopc", "naopc_comprehensiveness"),
    "naopc_sufficiency": ("metrics", "naopc", "naopc_sufficiency"),
    "tau_loo": ("metrics", "tau_loo"),
    "stability": ("stability", "tau"),
    "evaluations": ("evaluations",),
    "backward_evaluations": ("backward_evaluations",),
    "seconds": ("seconds",),
}
HIGHER_IS_BETTER = {"aopc_comprehensiveness": True, "aopc_sufficiency": False, "naopc_comprehensiveness": True,
                    "naopc_sufficiency": False, "tau_loo": True, "stability": True, "evaluations": False,
                    "backward_evaluations": False, "seconds": False}


def _get(result: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def item_values(items: Sequence[dict], explainer: str, metric: str) -> tuple[list[float], list[str]]:
    """(values, qids) of one metric of one explainer over the items where it succeeded."""
    values, qids = [], []
    for item in items:
        r = (item.get("explainers") or {}).get(explainer)
        if not r or r.get("status") != "ok":
            continue
        v = _get(r, ITEM_METRICS[metric])
        if v is not None:
            values.append(float(v))
            qids.append(str(item.get("qid")))
    return values, qids


def agreement(items: Sequence[dict], a: str, b: str) -> tuple[list[float], list[str]]:
    """Kendall tau between the values of explainers a and b on each item where both succeeded."""
    taus, qids = [], []
    for item in items:
        ra, rb = (item.get("explainers") or {}).get(a), (item.get("explainers") or {}).get(b)
        if ra and rb and ra.get("status") == rb.get("status") == "ok":
            tau = kendall_tau(ra["values"], rb["values"])
            if not math.isnan(tau):
                taus.append(tau)
                qids.append(str(item.get("qid")))
    return taus, qids


def summarize_items(items: Sequence[dict], seed: int, test: Literal["t-test", "wilcoxon"] = "t-test",
                    metrics: Sequence[str] = tuple(ITEM_METRICS), n_resamples: int = 1000) -> dict:
    """The explainer comparison of a set of `explain_pair` results (each with a "qid"):
    per explainer and metric {mean, ci_low, ci_high, n_queries, n_items}; per metric the paired
    tests of every two explainers over queries, Holm-corrected; the agreement matrix (mean tau
    between two explainers' values, with its interval over queries)."""
    names = list(dict.fromkeys(name for item in items for name in (item.get("explainers") or {})))
    schemes = sorted({_get(r, ("metrics", "aopc", "scheme")) for item in items
                      for r in (item.get("explainers") or {}).values()} - {None})
    out: dict = {"aopc_scheme": schemes, "confidence": 0.95, "resampled": "queries", "seed": seed, "test": test,
                 "correction": "holm", "explainers": {}, "comparisons": {}, "agreement": {}}
    for name in names:
        out["explainers"][name] = {m: query_mean_ci(*item_values(items, name, m), seed, n_resamples) for m in metrics}
    for m in metrics:
        per_query = {name: per_query_means(*item_values(items, name, m)) for name in names}
        per_query = {k: v for k, v in per_query.items() if v}
        out["comparisons"][m] = compare_groups(per_query, seed, test) if len(per_query) > 1 else []
    for a, b in combinations(names, 2):
        cell = query_mean_ci(*agreement(items, a, b), seed, n_resamples)
        out["agreement"].setdefault(a, {})[b] = cell
        out["agreement"].setdefault(b, {})[a] = cell
    return out


def summarize_rankings(rankings: Sequence[dict], seed: int, n_resamples: int = 1000) -> dict:
    """Listwise (RankingSHAP) results of `explain_ranking`: validity@k and completeness@k, and the
    cost, each with its interval over queries."""
    ok = [r for r in rankings if r.get("status") == "ok"]
    qids = [str(r.get("qid")) for r in ok]
    out: dict = {"validity": {}, "completeness": {}, "resampled": "queries", "seed": seed}
    for name in ("validity", "completeness"):
        for k in sorted({k for r in ok for k in r["metrics"][name]}, key=int):
            vals = [r["metrics"][name].get(k) for r in ok]
            out[name][k] = query_mean_ci([v if v is not None else float("nan") for v in vals], qids, seed, n_resamples)
    out["evaluations"] = query_mean_ci([r["evaluations"] for r in ok], qids, seed, n_resamples)
    out["seconds"] = query_mean_ci([r["seconds"] for r in ok], qids, seed, n_resamples)
    return out
