"""SHAP top-k ablation: attributions once per item, every k from them, a table and a plot per model
and k, and the k that maximises the configured criterion."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

TREE = {"name": "topk", "seed": 7,
        "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 8}],
        "splits": {"scheme": "random", "train": 0.5, "valid": 0.25, "test": 0.25},
        "retrieve": {"depth": 10}, "evaluate": {"measures": ["nDCG@10"], "split": "test"},
        "rerank": {"depth": 3, "systems": [
            {"name": "tiny-llama", "model": "tiny-llama", "prompt": "plain", "max_length": 128},
            {"name": "tiny-qwen2", "model": "tiny-qwen2", "prompt": "plain", "max_length": 128}]},
        "explain": {"nsamples": 16, "batch_size": 32},
        "tune": {"topk": {"ks": [1, 3, "all"], "max_queries": 2, "criterion": "comprehensiveness - sufficiency"}}}


def test_topk_sweep_writes_table_plot_and_chosen_k_from_one_attribution_pass(write_config, tmp_path):
    path = write_config(TREE)
    proc = run_cli("tune", path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results" / "topk"
    table = pd.read_csv(out / "topk.csv", dtype={"k": str})
    assert sorted(set(table["model"])) == ["tiny-llama", "tiny-qwen2"]
    for _, g in table.groupby("model"):
        assert list(g["k"]) == ["1", "3", "all"]
    # k=all keeps every word: nothing is missing, so sufficiency is exactly 0 ...
    assert np.allclose(table.loc[table["k"] == "all", "sufficiency"], 0.0)
    # ... and removing every word equals removing k random words (all of them).
    allk = table[table["k"] == "all"]
    assert np.allclose(allk["comprehensiveness"], allk["random_comprehensiveness"])
    report = json.loads((out / "topk.json").read_text())
    crit = table.groupby("k")["criterion"].mean()
    assert str(report["chosen_k"]) == crit.idxmax()
    md = (out / "topk.md").read_text()
    table_md, tests_md = md.split("Is the chosen k distinguishable")
    assert f"Chosen k = {report['chosen_k']}" in md and table_md.count("| tiny-llama |") == 3
    assert tests_md.count("| all models |") == len([t for t in report["neighbour_tests"] if t["model"] == "all models"])
    assert (out / "topk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Attributions once per item: one explain_one call per explained item, whatever the number of ks.
    for model in ("tiny-llama", "tiny-qwen2"):
        trial = json.loads((out / "tune" / "topk" / f"{model}.json").read_text())
        assert trial["explain_calls"] == len({(r["qid"], r["docid"]) for r in trial["rows"]}) == 2
    # every metric at every k has its interval over queries, and the chosen k is tested against its neighbours
    assert {(r["model"], str(r["k"])) for r in report["intervals"]} == \
        {(m, k) for m in ("tiny-llama", "tiny-qwen2", "all models") for k in ("1", "3", "all")}
    for r in report["intervals"]:
        for metric in ("comprehensiveness", "sufficiency", "criterion"):
            c = r[metric]
            # (to float noise: sufficiency at k=all is 0 up to 1e-9, and a constant sample's interval is that value)
            assert c["n_queries"] == 2 and c["ci_low"] - 1e-6 <= c["mean"] <= c["ci_high"] + 1e-6, (r["model"], r["k"],
                                                                                                   metric, c)
    overall = [t for t in report["neighbour_tests"] if t["model"] == "all models"]
    assert {str(t["chosen_k"]) for t in overall} == {str(report["chosen_k"])} and 1 <= len(overall) <= 2
    assert all(0 <= t["p_value"] <= t["p_holm"] <= 1 for t in report["neighbour_tests"])


def test_reused_attributions_give_what_a_separate_run_per_k_gives():
    """The per-k erasure scores from one pass equal a pass computed for that k alone."""
    from bench.config import ScorerSpec
    from bench.explain.config import ExplainConfig
    from bench.explain.item import explain_one
    from bench.rerank.scorers import build_scorer
    from bench.tune.topk import ALL_K, item_metrics, trial_explain_cfg

    scorer = build_scorer(ScorerSpec(name="t", model="tiny-qwen2", prompt="plain", max_length=128))
    query, text = "ocean carbon flux data", "Monthly ocean carbon flux observations from buoys in the North Atlantic"
    cfg = trial_explain_cfg(ExplainConfig(nsamples=16, ks=[1, 3, ALL_K], explainers=["kernel_shap", "loo"]))
    assert [e.name for e in cfg.explainers] == ["kernel_shap"] and not cfg.metrics  # the primary explainer alone
    once = explain_one(scorer, query, text, cfg, 3)
    rows = {r["k"]: r for r in item_metrics(once, query, [1, 3, ALL_K])}
    alone = explain_one(scorer, query, text, cfg.model_copy(update={"ks": [3]}), 3)
    full = 1 / (1 + np.exp(-alone["full_score"]))
    # Two runs score the same texts in differently composed padded batches: equal to float32 noise.
    assert rows[3]["comprehensiveness"] == pytest.approx(full - 1 / (1 + np.exp(-alone["erasure"]["3"]["removed"])),
                                                         abs=1e-6)
    assert rows[3]["aopc"] == pytest.approx((rows[1]["comprehensiveness"] + rows[3]["comprehensiveness"]) / 2)
    qwords = {"ocean", "carbon", "flux", "data"}
    top3 = [w.lower() for w in [t["word"] for t in sorted(
        [{"word": w, "v": v, "i": i} for i, (w, v) in enumerate(zip(once["words"], once["word_values"]))],
        key=lambda t: (-t["v"], t["i"]))[:3]]]
    assert rows[3]["query_overlap"] == pytest.approx(np.mean([w in qwords for w in top3]))


def test_chosen_k_maximises_the_configured_criterion():
    from bench.tune.topk import summarise

    items = pd.DataFrame([
        {"model": m, "k": k, "comprehensiveness": c, "sufficiency": s, "aopc": 0.0, "query_overlap": 0.0,
         "random_comprehensiveness": r}
        for m in ("a", "b") for k, c, s, r in ((1, 0.1, 0.5, 0.0), (5, 0.4, 0.2, 0.1), ("all", 0.6, 0.0, 0.6))])
    _, per_model, chosen, _ = summarise(items, "comprehensiveness - random_comprehensiveness")
    assert chosen == 5 and per_model == {"a": 5, "b": 5}
    _, _, chosen, _ = summarise(items, "comprehensiveness - sufficiency")
    assert chosen == "all"
    _, _, chosen, _ = summarise(items, "sufficiency")
    assert chosen == 1


def test_chosen_k_is_tested_against_its_neighbours_paired_over_queries_with_holm():
    """k=5 beats k=1 on every query (distinguishable); k=all is as good as k=5, up to noise (not distinguishable)."""
    from scipy import stats

    from bench.evaluate.significance import holm
    from bench.tune.topk import intervals, neighbour_tests, summarise

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, size=(3, 6))
    items = pd.DataFrame([
        {"model": "m", "qid": f"q{q}", "docid": "d", "k": k, "comprehensiveness": base + noise[i, q], "sufficiency": 0.0,
         "aopc": 0.0, "query_overlap": 0.0, "random_comprehensiveness": 0.0}
        for i, (k, base) in enumerate(((1, 0.1), (5, 0.5), ("all", 0.5))) for q in range(6)])
    _, per_model, chosen, _ = summarise(items, "comprehensiveness")
    assert chosen == 5 and per_model == {"m": 5}
    tests = {t["neighbour_k"]: t for t in neighbour_tests(items, "comprehensiveness", {"m": 5}, seed=0)}
    assert set(tests) == {1, "all"}
    by_hand = {k: stats.ttest_rel(noise[1] + 0.5, noise[i] + base).pvalue
               for i, (k, base) in ((0, (1, 0.1)), (2, ("all", 0.5)))}
    adjusted = dict(zip(by_hand, holm(list(by_hand.values()))))
    for k in (1, "all"):
        assert tests[k]["p_value"] == pytest.approx(by_hand[k]) and tests[k]["p_holm"] == pytest.approx(adjusted[k])
    assert tests[1]["distinguishable"] and not tests["all"]["distinguishable"]
    cis = {(r["model"], r["k"]): r for r in intervals(items, "comprehensiveness", seed=0)}
    c = cis[("m", 5)]["comprehensiveness"]
    assert c["n_queries"] == 6 and c["ci_low"] < 0.5 + noise[1].mean() < c["ci_high"] and c["ci_high"] - c["ci_low"] < 0.05
