"""Explanation quality as a measured axis of the pipeline: every configured explainer runs in the explain stage
on the data plane (trained cells included), and its faithfulness reaches the leaderboard, explanations.json,
the explainability-per-method table and the site with intervals over queries."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

TREE = {
    "name": "xi", "seed": 3, "ray": {"num_cpus": 2},
    "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
    "splits": {"scheme": "random", "train": 0.5, "valid": 0.17, "test": 0.33},
    "rerank": {"depth": 5, "systems": [{"name": "tiny", "model": "tiny-llama", "prompt": "plain", "max_length": 128}]},
    "evaluate": {"measures": ["nDCG@10"], "split": "test"},
    "train": {"models": [{"model": "tiny-qwen2", "name": "Qwen2-tiny"}], "methods": ["sft", "dpo"], "prompt": "plain",
              "hyper": {"max_steps": 2, "batch_size": 2, "max_length": 128, "logging_steps": 1, "lora_r": 4,
                        "lora_alpha": 8}, "max_concurrent_cells": 1},
    "explain": {"systems": "all", "top_items": 2, "max_item_tokens": 12, "nsamples": 16, "k": 3, "ks": [1, 3],
                "actors": 2, "explainers": ["kernel_shap", "loo", "random", {"name": "lime", "params": {"n_samples": 16}},
                                            {"name": "ranking_shap",
                                             "params": {"candidates": 3, "nsamples": 8, "max_features": 5}}]},
}
PAIRWISE = {"kernel_shap", "loo", "random", "lime"}


def test_every_explainer_runs_in_the_explain_stage_and_reaches_every_table_with_intervals(write_config, cli, tmp_path):
    cfg = write_config(TREE)
    r = cli("run", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "results" / "xi"
    systems = {"tiny", "Qwen2-tiny-sft", "Qwen2-tiny-dpo"}  # explain.systems: all = the zero-shot system AND the cells
    # (the metrics stage's cache folders live beside the per-system folders: they hold a _DONE.json marker)
    assert {p.name for p in (out / "explanations").iterdir() if not (p / "_DONE.json").exists()} == systems
    items = [json.loads(p.read_text()) for s in systems for p in (out / "explanations" / s).glob("*.json")
             if not p.name.endswith("__ranking.json")]
    assert len(items) == 3 * 4 * 2  # 3 systems x 4 test queries x top 2 items
    for it in items:
        assert set(it["explainers"]) == PAIRWISE and it["primary"] == "kernel_shap", it.get("message")
        n_query = it["sides"].count("query")
        for name, res in it["explainers"].items():
            assert res["status"] == "ok" and len(res["values"]) == len(it["pair_words"]), (name, res["message"])
            assert (res["evaluations"] > 0) == (name != "random") and res["seconds"] >= 0
            assert "aopc_comprehensiveness" in res["metrics"]["aopc"] and "tau_loo" in res["metrics"]
        # the reason prompt, Fig. 4 and comp@k read the primary explainer's values of the item's words
        assert it["word_values"] == pytest.approx(it["explainers"]["kernel_shap"]["values"][n_query:])
        assert it["words"] == it["pair_words"][n_query:]
        assert [t["value"] for t in it["topk"]] == pytest.approx(sorted(it["word_values"], reverse=True)[:it["k"]])
    rankings = [json.loads(p.read_text()) for p in out.glob("explanations/*/*__ranking.json")]
    assert len(rankings) == 3 * 4 and all(rk["status"] == "ok" and "1" in rk["metrics"]["validity"] for rk in rankings)

    metrics = json.loads((out / "explanations.json").read_text())
    for system in systems:
        summary = metrics["explainers"][system]["explainers"]
        for name in PAIRWISE:  # the mean of per-query means, recomputed here from the item files
            mine = [it for it in items if it["system"] == system]
            per_query: dict[str, list[float]] = {}
            for it in mine:
                v = it["explainers"][name]["metrics"]["aopc"]["aopc_comprehensiveness"]
                if v is not None:
                    per_query.setdefault(it["qid"], []).append(v)
            cell = summary["explainers"][name]["aopc_comprehensiveness"]
            assert cell["n_queries"] == len(per_query) == 4
            assert cell["mean"] == pytest.approx(np.mean([np.mean(v) for v in per_query.values()]))
            assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
        comparisons = summary["comparisons"]["aopc_comprehensiveness"]
        assert len(comparisons) == 6 and all(c["p_value"] <= c["p_holm"] <= 1 for c in comparisons)  # 4 choose 2, Holm
        assert set(summary["agreement"]["kernel_shap"]) == PAIRWISE - {"kernel_shap"}
        assert set(metrics["explainers"][system]["listwise"]["validity"]) == {"1", "3", "5"}
    assert len(metrics["system_comparisons"]["aopc_comprehensiveness"]) == 3

    # the leaderboard: faithfulness with intervals beside nDCG, in every export; the JSON passes its schema
    from bench.report.export import validate_json

    board = json.loads((out / "leaderboard.json").read_text())
    validate_json(board)
    assert set(board["explain_intervals"]["AOPC comp"]) == systems
    tiny = board["explain_intervals"]["AOPC comp"]["tiny"]
    assert tiny == {**metrics["explainers"]["tiny"]["explainers"]["explainers"]["kernel_shap"]["aopc_comprehensiveness"]}
    md = (out / "leaderboard.md").read_text()
    assert "AOPC comp [95% CI]" in md and "comp@3 [95% CI]" in md and f"{tiny['mean']:.4f} [" in md
    csv = pd.read_csv(out / "leaderboard.csv", index_col="system")
    assert csv.loc["tiny", "AOPC comp ci_low"] == pytest.approx(tiny["ci_low"], abs=1e-6)
    assert math.isnan(csv.loc["BM25", "AOPC comp"])
    assert "explanation faithfulness" in (out / "leaderboard.tex").read_text()

    # explainability per training method: sft, dpo and the zero-shot reference, with intervals and the correlation
    table = json.loads((out / "explainability.json").read_text())
    assert [row["method"] for row in table["rows"]] == ["sft", "dpo", "zero-shot"]
    for row in table["rows"]:
        assert row["aopc_comprehensiveness"]["n_queries"] == 4 and row["nDCG@10"]["n_queries"] == 4
    corr = table["correlation"]["aopc_comprehensiveness"]
    assert corr["spearman"]["n_cells"] == 2 and corr["spearman"]["ci_low"] is None  # two cells: no interval
    assert "Explainability per training method" in (out / "explainability.md").read_text()

    site = cli("leaderboard", cfg, "--html", str(tmp_path / "site"))
    assert site.returncode == 0, site.stderr[-2000:]
    page = (tmp_path / "site" / "xi" / "index.html").read_text()
    assert "Explainers: faithfulness, stability and cost" in page and 'id="cost-faithfulness"><svg' in page
    assert "Explainability per training method" in page and 'id="faithfulness"' in page
    again = cli("run", cfg)
    assert again.returncode == 0 and "nothing to recompute" in again.stdout


def test_explain_one_gives_the_primary_explainers_item_words_top_k_and_erasure_scores():
    """Erasure scores equal the scorer's own scores of the item with its top-k words removed / kept alone."""
    from bench.config import ScorerSpec
    from bench.explain.config import ExplainConfig
    from bench.explain.item import explain_one
    from bench.explain.words import compose, segment
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(ScorerSpec(name="t", model="tiny-llama", prompt="plain", max_length=128))
    query, text = "ozone trend", "Surface ozone record at an alpine station shows a clear upward trend"
    cfg = ExplainConfig(explainers=["loo", "kernel_shap"], nsamples=16, k=3, ks=[2], metrics=False,
                        repeat_seed_offset=None)
    res = explain_one(scorer, query, text, cfg, seed=1)
    assert res["status"] == "ok" and res["primary"] == "loo"  # the first pairwise explainer is primary
    seg = segment(res["text"], scorer.tokenizer)
    assert res["words"] == seg.words == text.split()
    full = float(scorer.score([query], [text])[0])
    assert res["full_score"] == pytest.approx(full, abs=1e-5)
    drops = [full - float(scorer.score([query], [compose(seg.text, seg.word_spans, np.arange(len(seg.words)) != i)])[0])
             for i in range(len(seg.words))]
    assert res["word_values"] == pytest.approx(drops, abs=1e-5)  # leave-one-out of the item's words, query kept
    top2 = sorted(range(len(drops)), key=lambda i: (-drops[i], i))[:2]
    removed = compose(seg.text, seg.word_spans, ~np.isin(np.arange(len(drops)), top2))
    kept = compose(seg.text, seg.word_spans, np.isin(np.arange(len(drops)), top2))
    assert res["erasure"]["2"]["removed"] == pytest.approx(float(scorer.score([query], [removed])[0]), abs=1e-5)
    assert res["erasure"]["2"]["kept"] == pytest.approx(float(scorer.score([query], [kept])[0]), abs=1e-5)
    assert [t["index"] for t in res["topk"]] == sorted(range(len(drops)), key=lambda i: (-drops[i], i))[:3]
    assert res["evaluations"] == sum(r["evaluations"] for r in res["explainers"].values()) + \
        res["metric_evaluations"] + res["erasure_evaluations"]


def _item(system, qid, comp, dataset="d"):
    return {"system": system, "dataset": dataset, "qid": qid, "status": "ok", "primary": "ks",
            "explainers": {"ks": {"status": "ok", "values": [0.0], "evaluations": 10, "seconds": 1.0,
                                  "metrics": {"aopc": {"aopc_comprehensiveness": comp, "aopc_sufficiency": -comp}}}}}


def test_faithfulness_columns_are_means_of_per_query_means_with_a_bootstrap_over_queries():
    """Two items of one query count as one query: the column is not an item mean, and queries of two data
    sources with the same id stay apart."""
    from bench.evaluate.significance import mean_ci
    from bench.explain.summary import fmt_interval, interval_columns, system_summary

    items = [_item("A", "q1", 0.1), _item("A", "q1", 0.3), _item("A", "q2", 0.5), _item("A", "q1", 0.9, dataset="e")]
    summary = system_summary(items, [], [], seed=7)
    cell = interval_columns({"A": summary}, 10, [])["AOPC comp"]["A"]
    per_query = [0.2, 0.5, 0.9]  # d/q1 (two items), d/q2, e/q1
    assert cell["mean"] == pytest.approx(np.mean(per_query)) and cell["n_queries"] == 3 and cell["n_items"] == 4
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(mean_ci(per_query, 7))
    assert fmt_interval(cell) == f"{np.mean(per_query):.4f} [{cell['ci_low']:.4f}, {cell['ci_high']:.4f}]"


def test_correlation_across_cells_spearman_bootstrap_and_pearson_fisher():
    from scipy import stats

    from bench.report.explainability import pearson_fisher, spearman_bootstrap

    x = [0.2, 0.4, 0.5, 0.7, 0.8, 0.9]
    y = [0.01, 0.03, 0.02, 0.05, 0.04, 0.06]
    s = spearman_bootstrap(x, y, seed=0, n_resamples=500)
    assert s["rho"] == pytest.approx(stats.spearmanr(x, y).statistic) and s["n_cells"] == 6
    assert -1 <= s["ci_low"] <= s["rho"] <= s["ci_high"] <= 1 and s["resamples_used"] <= 500
    assert spearman_bootstrap(x, y, seed=0, n_resamples=500) == s  # seeded
    p = pearson_fisher(x, y)
    r = stats.pearsonr(x, y).statistic
    half = 1.959963984540054 / math.sqrt(6 - 3)
    assert p["r"] == pytest.approx(r)
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)))
    assert spearman_bootstrap(x[:3], y[:3], 0)["ci_low"] is None and pearson_fisher(x[:3], y[:3])["ci_low"] is None


def test_make_perf_runs_the_explainer_benchmark_and_its_committed_result_meets_the_target():
    """`make perf` (python -m bench.perf) discovers bench/perf/explainers.py; results/perf/explainers.json has each
    explainer's seconds and model rows per item and its overhead over the batched-forward floor, <= 1.3."""
    from bench.perf.__main__ import available
    from conftest import ROOT

    assert "explainers" in available()
    doc = json.loads((ROOT / "results" / "perf" / "explainers.json").read_text())
    assert set(doc["explainers"]) == {"kernel_shap", "partition_shap", "loo", "integrated_gradients", "lime", "random"}
    for name, r in {**doc["explainers"], "ranking_shap": doc["ranking_shap"]}.items():
        assert r["evaluations_per_item"] >= 0 and r["seconds_per_item"]["shipped"] >= 0, name
        if name != "random":  # random spends no model rows: no floor to compare with
            assert r["evaluations_per_item"] > 0 and r["overhead_cpu"] <= doc["target_overhead"] == 1.3, name


def test_a_system_that_ranks_one_of_two_data_sources_is_explained_where_it_ranked(write_config, cli, tmp_path):
    """Regression: the explain stage asked every explained system for every data source's ranking, so a system
    restricted to one source (`datasets:`) stopped the run with KeyError 'no ranking of demo-b by only-a'."""
    cfg = write_config({
        "name": "two", "seed": 3, "ray": {"num_cpus": 2},
        "data": [{"name": "demo-a", "loader": "demo", "max_queries": 4},
                 {"name": "demo-b", "loader": "demo", "max_queries": 3}],
        "splits": {"scheme": "none"}, "evaluate": {"measures": ["nDCG@10"]},
        "rerank": {"depth": 3, "systems": [
            {"name": "only-a", "model": "tiny-llama", "prompt": "plain", "max_length": 96, "datasets": ["demo-a"]},
            {"name": "both", "model": "tiny-qwen2", "prompt": "plain", "max_length": 96}]},
        "explain": {"max_queries": 1, "nsamples": 8, "max_item_tokens": 8, "ks": [1]},
    })
    r = cli("explain", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "results" / "two" / "explanations"
    datasets = {s: sorted(json.loads(p.read_text())["dataset"] for p in (out / s).glob("*.json"))
                for s in ("only-a", "both")}
    assert datasets == {"only-a": ["demo-a"], "both": ["demo-a", "demo-b"]}
