"""Which differences are real: paired tests per query against one or more baselines.

For every baseline B, every (dataset, measure) and every other system S, the per-query scores of
S and B on the queries both answered are compared with a paired t-test (`scipy.stats.ttest_rel`)
or a Wilcoxon signed-rank test (`scipy.stats.wilcoxon`). The p-values of one family (one
baseline, one dataset, one measure: all systems compared with B there) are corrected for
multiple comparisons with Holm (default) or Bonferroni. For one measure (nDCG@10 by default) the
effect size (paired Cohen's d) and a confidence interval of the mean difference are added, computed the
way the test decides (`difference_ci`: the t interval beside a t-test, so it excludes 0 exactly when the
uncorrected p < 1 - confidence); each system's mean gets a BCa bootstrap interval over queries
(`mean_ci`).
"""
from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import InputError

# Columns of the significance table (written to significance.csv and into leaderboard.json).
COLUMNS = ["baseline", "system", "dataset", "measure", "n", "mean", "baseline_mean", "delta", "statistic",
           "p_value", "p_adjusted", "significant", "cohens_d", "ci_low", "ci_high"]
# Superscript per baseline, in the order the baselines are listed.
MARKS = ("†", "‡", "§", "¶", "♯", "♮")


def paired_test(a: Sequence[float], b: Sequence[float], test: Literal["t-test", "wilcoxon"] = "t-test"
                ) -> tuple[float, float]:
    """(statistic, two-sided p-value) of a paired test of a against b.

    Identical score vectors (every difference 0) give p = 1: there is no difference to find, while
    scipy answers NaN (t-test) or raises (Wilcoxon).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    if len(a) < 2 or np.allclose(a - b, 0.0, atol=1e-12):
        return 0.0, 1.0
    if test == "t-test":
        res = stats.ttest_rel(a, b)
    elif test == "wilcoxon":
        res = stats.wilcoxon(a, b)
    else:
        raise ValueError(f"unknown test {test!r}")
    p = float(res.pvalue)
    return float(res.statistic), (1.0 if math.isnan(p) else p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (same order as given).

    Sort ascending; the i-th smallest (0-based) is multiplied by (m - i); running maximum so the
    adjusted values stay monotone; capped at 1.
    """
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def bonferroni(pvalues: Sequence[float]) -> list[float]:
    m = len(pvalues)
    return [min(1.0, m * float(p)) for p in pvalues]


def correct(pvalues: Sequence[float], method: Literal["holm", "bonferroni", "none"]) -> list[float]:
    if method == "holm":
        return holm(pvalues)
    if method == "bonferroni":
        return bonferroni(pvalues)
    return [float(p) for p in pvalues]


def cohens_d_paired(a: Sequence[float], b: Sequence[float]) -> float:
    """Paired Cohen's d (d_z): mean difference over the standard deviation of the differences."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if len(diff) < 2:
        return float("nan")
    sd = diff.std(ddof=1)
    if sd == 0:
        return 0.0 if diff.mean() == 0 else float(np.sign(diff.mean()) * np.inf)
    return float(diff.mean() / sd)


def mean_ci(values: Sequence[float], seed: int, n_resamples: int = 1000,
            confidence: float = 0.95) -> tuple[float, float]:
    """Seeded BCa bootstrap CI of a mean over queries (`scipy.stats.bootstrap`, method BCa).

    BCa, not the percentile interval: at the query counts of IR test collections (17 DL19 test queries,
    25-50 explained queries) the percentile interval is too narrow for skewed per-query scores; BCa corrects
    its bias and skew (Efron 1987). Where BCa is undefined (too few distinct values for its acceleration
    estimate) the percentile interval is returned."""
    x = np.asarray(values, float)
    if len(x) < 2 or n_resamples <= 0:
        return float("nan"), float("nan")
    if np.allclose(x, x[0]):
        return float(x[0]), float(x[0])
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns when BCa is degenerate; we fall back instead
            res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                  method=method, random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    return float("nan"), float("nan")


def difference_ci(a: Sequence[float], b: Sequence[float], test: str = "t-test", seed: int = 42,
                  n_resamples: int = 1000, confidence: float = 0.95) -> tuple[float, float]:
    """CI of the mean paired difference a - b, computed the way the paired test decides: for the t-test, the
    Student t interval of the mean difference (`scipy.stats.ttest_rel(...).confidence_interval`), so the CI
    excludes 0 exactly when p < 1 - confidence; for Wilcoxon (which tests the differences' location, not
    their mean) the BCa bootstrap CI of the mean difference. (Before, a percentile bootstrap CI sat beside a
    t-test: at n = 17 it excluded 0 where the test gave p = 0.052.)"""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2:
        return float("nan"), float("nan")
    diff = a - b
    if np.allclose(diff, diff[0]):
        return float(diff[0]), float(diff[0])
    if test == "t-test":
        ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=confidence)
        return float(ci.low), float(ci.high)
    return mean_ci(diff, seed, n_resamples, confidence)


def system_intervals(per_query: pd.DataFrame, measure: str, seed: int, n_resamples: int = 1000,
                     confidence: float = 0.95) -> dict:
    """system -> dataset -> {measure, mean, low, high, n}: each system's mean `measure` with its CI."""
    import ir_measures

    printed = str(ir_measures.parse_measure(measure))
    out: dict = {}
    rows = per_query[per_query["measure"] == printed]
    for (system, dataset), block in rows.groupby(["system", "dataset"], sort=False):
        low, high = mean_ci(block["value"].to_numpy(), seed, n_resamples, confidence)
        out.setdefault(system, {})[dataset] = {"measure": printed, "mean": float(block["value"].mean()),
                                               "low": None if np.isnan(low) else low,
                                               "high": None if np.isnan(high) else high, "n": int(len(block))}
    return out


def compare(per_query: pd.DataFrame, baselines: Sequence[str], test: Literal["t-test", "wilcoxon"] = "t-test",
            correction: Literal["holm", "bonferroni", "none"] = "holm", alpha: float = 0.05,
            ci_measure: str | None = "nDCG@10", seed: int = 42, n_resamples: int = 1000,
            confidence: float = 0.95) -> pd.DataFrame:
    """Every system against every baseline on every (dataset, measure): one row each (`COLUMNS`).

    `per_query` has columns system, dataset, qid, measure, value. A baseline absent from a dataset
    is skipped there; a baseline that appears nowhere is an input error.
    """
    systems_present = set(per_query["system"]) if len(per_query) else set()
    for b in baselines:
        if b not in systems_present:
            raise InputError(f"report.baselines: no system named {b!r} in the results; "
                             f"expected one of {sorted(systems_present)}")
    rows = []
    dupes = per_query.duplicated(["dataset", "measure", "qid", "system"])
    if dupes.any():  # two systems under one name would silently collapse into one column
        first = per_query[dupes].iloc[0]
        raise ValueError(f"per-query scores repeat for system {first['system']!r} on {first['dataset']!r}: "
                         f"system names must be unique")
    wide = per_query.pivot(index=["dataset", "measure", "qid"], columns="system", values="value")
    for (dataset, measure), block in wide.groupby(level=["dataset", "measure"], sort=False):
        for base in baselines:
            if base not in block.columns or block[base].isna().all():
                continue
            family = []
            for system in block.columns:
                if system == base or block[system].isna().all():
                    continue
                pair = block[[system, base]].dropna()
                a, b = pair[system].to_numpy(), pair[base].to_numpy()
                statistic, p = paired_test(a, b, test)
                row = {"baseline": base, "system": system, "dataset": dataset, "measure": measure, "n": len(a),
                       "mean": float(a.mean()), "baseline_mean": float(b.mean()), "delta": float(a.mean() - b.mean()),
                       "statistic": statistic, "p_value": p, "cohens_d": float("nan"), "ci_low": float("nan"),
                       "ci_high": float("nan")}
                if measure == ci_measure:
                    row["cohens_d"] = cohens_d_paired(a, b)
                    row["ci_low"], row["ci_high"] = difference_ci(a, b, test, seed, n_resamples, confidence)
                family.append(row)
            for row, p_adj in zip(family, correct([r["p_value"] for r in family], correction)):
                row["p_adjusted"] = p_adj
                row["significant"] = bool(p_adj < alpha)
            rows.extend(family)
    return pd.DataFrame(rows, columns=COLUMNS)


def marks(sig: pd.DataFrame, baselines: Sequence[str]) -> dict[tuple[str, str, str], str]:
    """(system, dataset, measure) -> superscript string, one mark per baseline it differs from."""
    out: dict[tuple[str, str, str], str] = {}
    if sig is None or sig.empty:
        return out
    symbol = {b: MARKS[i % len(MARKS)] * (1 + i // len(MARKS)) for i, b in enumerate(baselines)}
    for row in sig[sig["significant"]].itertuples(index=False):
        key = (row.system, row.dataset, row.measure)
        out[key] = out.get(key, "") + symbol.get(row.baseline, "*")
    return out


def legend(baselines: Sequence[str], test: str, correction: str, alpha: float) -> str:
    """One line explaining the superscripts, printed under every table."""
    names = {"t-test": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
    corr = {"holm": "Holm-corrected", "bonferroni": "Bonferroni-corrected", "none": "uncorrected"}[correction]
    parts = [f"{MARKS[i % len(MARKS)] * (1 + i // len(MARKS))} differs significantly from {b}"
             for i, b in enumerate(baselines)]
    return f"{'; '.join(parts)} ({names.get(test, test)}, {corr} p < {alpha:g})."
