"""Faithfulness metrics against hand computations on a three-word item, and aggregation over
queries: the bootstrap resamples queries, paired tests pair queries, Holm corrects a family."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.evaluate import faithfulness as fm
from bench.evaluate.significance import holm

# A three-word item. Scores (log-odds) of the item with each set of words removed:
SCORES = {(): 2.0, (0,): 1.0, (1,): 0.0, (2,): 2.5, (0, 1): -1.0, (0, 2): 1.5, (1, 2): 0.5, (0, 1, 2): -2.0}
# By hand, p = 1 / (1 + e^-s): p(full) = 0.8807971; drops g(S) = p(full) - p(without S):
G = {(0,): 0.1497385, (1,): 0.3807971, (2,): -0.0433447, (0, 1): 0.6118557, (0, 2): 0.0632226,
     (1, 2): 0.2583377, (0, 1, 2): 0.7615942}
GOOD = [0.2, 0.9, -0.1]  # ranks word 1, then 0, then 2
WORSE = [0.9, 0.2, -0.1]  # ranks word 0, then 1, then 2


def score_without(removed_mask: np.ndarray) -> float:
    return SCORES[tuple(int(i) for i in np.flatnonzero(removed_mask))]


def drop(masks: np.ndarray) -> np.ndarray:
    p_full = 1 / (1 + math.exp(-SCORES[()]))
    return np.array([p_full - 1 / (1 + math.exp(-score_without(m))) for m in np.atleast_2d(masks)])


def test_hand_drops_match_the_table():
    for removed, g in G.items():
        mask = np.zeros(3)
        mask[list(removed)] = 1
        assert drop(mask)[0] == pytest.approx(g, abs=1e-7)


def test_eraser_bins_round_up_and_keep_duplicate_bins():
    bins = fm.eraser_bins(GOOD)
    # 1 %, 5 %, 10 %, 20 % of 3 words round up to 1 word; 50 % of 3 = 1.5 -> 2 words
    assert bins.sizes == (1, 1, 1, 1, 2)
    assert bins.rationales == ((1,), (1,), (1,), (1,), (1, 0))
    assert fm.eraser_bins(np.arange(30.0)).sizes == (1, 2, 3, 6, 15)
    # floats: 28 % of 25 words is 7.000000000000001; the ceiling must still give 7, not 8
    assert fm.eraser_bins(np.arange(25.0), fractions=(0.28, 0.5)).sizes == (7, 13)
    assert fm.eraser_bins(np.arange(200.0)).sizes == (2, 10, 20, 40, 100)


def test_eraser_comprehensiveness_sufficiency_and_aopc_by_hand():
    bins = fm.eraser_bins(GOOD)
    without = [SCORES[tuple(sorted(r))] for r in bins.rationales]
    only = [SCORES[tuple(sorted(set(range(3)) - set(r)))] for r in bins.rationales]
    comp = fm.comprehensiveness(SCORES[()], without)
    suff = fm.sufficiency(SCORES[()], only)
    assert comp == pytest.approx([G[(1,)]] * 4 + [G[(0, 1)]], abs=1e-7)
    assert suff == pytest.approx([G[(0, 2)]] * 4 + [G[(2,)]], abs=1e-7)
    assert fm.aopc(comp) == pytest.approx((4 * 0.3807971 + 0.6118557) / 5, abs=1e-7)  # 0.4270088
    assert fm.aopc(suff) == pytest.approx((4 * 0.0632226 - 0.0433447) / 5, abs=1e-7)  # 0.0419091


def test_ferret_bins_floor_positive_words_only_and_skip_repeats():
    bins = fm.ferret_bins(GOOD)
    # int(f * 3): 0 for 10-30 %, 1 for 40-60 %, 2 for 70-90 %, 3 for 100 %; word 2 is negative, so the
    # 100 % rationale equals the 70 % one and is skipped, as are the repeats inside each band
    assert bins.fractions == pytest.approx((0.4, 0.7))
    assert bins.rationales == ((1,), (1, 0))
    assert fm.ferret_bins([-1.0, -2.0, -0.5]).rationales == ()  # no positive word: no rationale


def test_naopc_exact_bounds_and_normalisation_by_hand():
    lower, upper = fm.exact_aopc_bounds(3, drop)
    # best order 1, 0, 2: (g{1} + g{0,1} + g{all}) / 3; worst order 2, 0, 1: (g{2} + g{0,2} + g{all}) / 3
    assert upper == pytest.approx((0.3807971 + 0.6118557 + 0.7615942) / 3, abs=1e-7)  # 0.5847490
    assert lower == pytest.approx((-0.0433447 + 0.0632226 + 0.7615942) / 3, abs=1e-7)  # 0.2604907
    good = fm.order_aopc([1, 0, 2], drop)
    assert fm.normalised_aopc(good, lower, upper) == pytest.approx(1.0)
    assert fm.normalised_aopc(fm.order_aopc([2, 0, 1], drop), lower, upper) == pytest.approx(0.0)  # its sufficiency
    worse = fm.order_aopc([0, 1, 2], drop)
    assert worse == pytest.approx((0.1497385 + 0.6118557 + 0.7615942) / 3, abs=1e-7)
    assert fm.normalised_aopc(worse, lower, upper) == pytest.approx((0.5077294 - 0.2604907) / (0.5847490 - 0.2604907),
                                                                    abs=1e-6)  # 0.7624748
    assert math.isnan(fm.normalised_aopc(0.3, 0.5, 0.5))


def test_beam_bounds_are_inner_estimates_and_exact_with_a_wide_beam():
    rng = np.random.default_rng(3)
    table = rng.normal(size=2 ** 6)  # a 6-word item with arbitrary scores per removal set

    def random_drop(masks):
        idx = (np.atleast_2d(masks).astype(np.int64) << np.arange(6)).sum(axis=1)
        return table[0] - table[idx]

    lower, upper = fm.exact_aopc_bounds(6, random_drop)
    b_lower, b_upper = fm.beam_aopc_bounds(6, random_drop, beam_size=1)
    assert lower <= b_lower + 1e-12 and b_upper <= upper + 1e-12
    assert fm.beam_aopc_bounds(6, random_drop, beam_size=64) == pytest.approx((lower, upper))
    assert fm.beam_aopc_bounds(3, drop, beam_size=1) == pytest.approx(fm.exact_aopc_bounds(3, drop))


def test_tau_with_leave_one_out_by_hand():
    loo = [SCORES[()] - SCORES[(i,)] for i in range(3)]  # [1.0, 2.0, -0.5]
    assert fm.tau_loo(GOOD, loo) == pytest.approx(1.0)
    assert fm.tau_loo(WORSE, loo) == pytest.approx(1 / 3)  # pair (0, 1) discordant, two concordant
    assert fm.tau_loo([-v for v in GOOD], loo) == pytest.approx(-1.0)  # a sign error shows
    assert math.isnan(fm.kendall_tau([1, 1, 1], loo))
    assert fm.rank_similarity([3, 2, 1], [1, 1, 1]) == 0.0  # a fully tied ranking carries no order


def test_bootstrap_resamples_queries_not_items():
    rng = np.random.default_rng(0)
    many = {"q1": rng.normal(0.2, 0.1, 40), "q2": rng.normal(0.5, 0.1, 3), "q3": [0.9], "q4": rng.normal(0.4, 0.1, 7)}
    values = [v for q in many for v in many[q]]
    qids = [q for q in many for _ in many[q]]
    one_each = fm.query_mean_ci([float(np.mean(many[q])) for q in many], list(many), seed=7)
    by_items = fm.query_mean_ci(values, qids, seed=7)
    assert {k: by_items[k] for k in ("mean", "ci_low", "ci_high", "n_queries")} == \
           {k: one_each[k] for k in ("mean", "ci_low", "ci_high", "n_queries")}
    assert by_items["n_queries"] == 4 and by_items["n_items"] == 51
    # two queries whose items sit at 0 and at 1: resampling queries spans both; items would not
    two = fm.query_mean_ci([0.0] * 50 + [1.0] * 50, ["a"] * 50 + ["b"] * 50, seed=1)
    assert two["mean"] == 0.5 and two["ci_low"] <= 0.0 + 1e-9 and two["ci_high"] >= 1.0 - 1e-9


def test_holm_by_hand_and_in_the_comparison_family():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(2)
    queries = [f"q{i}" for i in range(12)]
    per_query = {"a": {q: 0.5 + 0.3 + rng.normal(0, 0.05) for q in queries},
                 "b": {q: 0.5 + rng.normal(0, 0.05) for q in queries},
                 "c": {q: 0.5 + 0.01 + rng.normal(0, 0.05) for q in queries}}
    rows = fm.compare_groups(per_query, seed=0)
    assert [(r["a"], r["b"]) for r in rows] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p_value"] for r in rows]))
    assert rows[0]["significant"] and not rows[2]["significant"]
    assert rows[0]["delta"] == pytest.approx(np.mean([per_query["a"][q] - per_query["b"][q] for q in queries]))
    vs_b = fm.compare_groups(per_query, seed=0, baseline="b")
    assert [(r["a"], r["b"]) for r in vs_b] == [("a", "b"), ("c", "b")]


def test_paired_test_pairs_query_means_not_items():
    from scipy import stats

    a = {"q1": 1.0, "q2": 2.5, "q3": 3.5, "q5": 0.0}
    b = {"q1": 0.5, "q2": 1.5, "q4": 9.0, "q5": 0.2}
    row = fm.paired_over_queries(a, b, seed=0)
    assert row["n_queries"] == 3 and row["delta"] == pytest.approx((0.5 + 1.0 - 0.2) / 3)
    assert row["p_value"] == pytest.approx(stats.ttest_rel([1.0, 2.5, 0.0], [0.5, 1.5, 0.2]).pvalue)


def test_summarize_items_aggregates_per_query_with_intervals_and_agreement():
    def item(qid, comp_a, comp_b, values_b):
        def result(comp, values):
            return {"status": "ok", "values": values, "evaluations": 10, "seconds": 0.5,
                    "metrics": {"aopc": {"scheme": "eraser", "aopc_comprehensiveness": comp}, "tau_loo": 0.5}}
        return {"qid": qid, "explainers": {"a": result(comp_a, [1.0, 2.0, 3.0]), "b": result(comp_b, values_b)}}

    items = [item("q1", 0.4, 0.1, [3.0, 2.0, 1.0]), item("q1", 0.6, 0.3, [3.0, 2.0, 1.0]),
             item("q2", 0.2, 0.2, [1.0, 2.0, 3.0]), item("q3", 0.5, 0.1, [1.0, 3.0, 2.0])]
    out = fm.summarize_items(items, seed=0)
    a = out["explainers"]["a"]["aopc_comprehensiveness"]
    assert a["mean"] == pytest.approx((0.5 + 0.2 + 0.5) / 3) and a["n_queries"] == 3 and a["n_items"] == 4
    assert a["ci_low"] <= a["mean"] <= a["ci_high"]
    # agreement: tau per item -1, -1, 1, 1/3 -> per query -1, 1, 1/3
    assert out["agreement"]["a"]["b"]["mean"] == pytest.approx((-1 + 1 + 1 / 3) / 3)
    assert out["aopc_scheme"] == ["eraser"]
    (row,) = out["comparisons"]["aopc_comprehensiveness"]
    assert row["n_queries"] == 3 and row["delta"] == pytest.approx(((0.5 - 0.2) + 0 + 0.4) / 3)
