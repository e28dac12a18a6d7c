"""Explanation metrics: ERASER comprehensiveness / sufficiency / AOPC, grounding, text agreement."""
from __future__ import annotations

import math

import pytest

from bench.evaluate.explanations import aopc, explanation_grounding, faithfulness, sigmoid, text_agreement


def item(system, full, erasure):
    return {"system": system, "status": "ok", "full_score": full,
            "erasure": {str(k): {"removed": r, "kept": kp, "random": rd} for k, (r, kp, rd) in erasure.items()}}


def test_comprehensiveness_and_sufficiency_follow_eraser_on_the_probability_scale():
    items = [item("A", 2.0, {1: (1.0, -1.0, 1.9), 5: (-1.0, 1.5, 1.0)}),
             item("A", 0.0, {1: (0.0, 0.0, 0.0), 5: (-2.0, 0.0, -0.5)}),
             {"system": "A", "status": "empty", "erasure": {}}]  # unexplainable items are left out
    f = faithfulness(items).set_index(["system", "k"])
    p = lambda s: float(sigmoid(s))  # noqa: E731
    comp5 = ((p(2) - p(-1)) + (p(0) - p(-2))) / 2
    assert f.loc[("A", 5), "comprehensiveness"] == pytest.approx(comp5)
    assert f.loc[("A", 5), "sufficiency"] == pytest.approx(((p(2) - p(1.5)) + 0) / 2)
    assert f.loc[("A", 5), "n"] == 2
    a = aopc(faithfulness(items)).set_index("system")
    assert a.loc["A", "aopc_comprehensiveness"] == pytest.approx(f["comprehensiveness"].mean())


def test_explanation_grounding_counts_stemmed_case_insensitive_mentions():
    top = ["Atmospheric", "measurements", "ICOS", "2018-2022", "--"]
    text = "It was selected because it reports atmospheric measuring from ICOS stations."
    # atmospheric (case), measurements~measuring (stem), ICOS: 3 of 4 checkable words ("--" has no letters)
    assert explanation_grounding(top, text) == pytest.approx(3 / 4)
    assert explanation_grounding(top, None) is None and explanation_grounding(["--"], "x") is None


def test_text_agreement_is_perfect_for_identical_texts_and_lower_for_unrelated_ones():
    same = text_agreement(["Hourly CO2 at tall towers in Europe."], ["Hourly CO2 at tall towers in Europe."])
    assert same["bleu"] == pytest.approx(100.0) and same["rougeL"] == pytest.approx(1.0)
    assert same["cosine"] == pytest.approx(1.0, abs=1e-4) and same["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    diff = text_agreement(["Hourly CO2 at tall towers in Europe."], ["A recipe for lemon cake with butter."])
    assert diff["bleu"] < 10 and diff["rougeL"] < 0.3 and diff["cosine"] < 0.5 and diff["bertscore_f1"] < 0.9
    assert math.isnan(text_agreement([], [])["bleu"])


def test_table2_text_columns_stay_for_every_dataset_with_their_scale_in_the_header():
    """The paper's Table 2 text columns (top-1 item vs the experts' top item) for each of two data sources,
    BLEU on the paper's 0-1 scale (sacrebleu's 0-100 / 100); before, they vanished with two sources."""
    from bench.config import DemoSource, RetrieveConfig
    from bench.data.loaders import load_source
    from bench.evaluate.explanations import table2_text
    from bench.explain.steps import leaderboard_columns
    from bench.retrieve.bm25 import bm25_run

    tables = {}
    for name, n in (("demo-a", 3), ("demo-b", 5)):
        col = load_source(DemoSource(name=name, loader="demo", max_queries=n))
        run = bm25_run(col, RetrieveConfig())
        tables[name] = table2_text(col, {"BM25": run}, sorted(col.queries)).to_dict(orient="records")
    cols = leaderboard_columns({"table2_text": tables}, 10, [10])
    for name in tables:
        row = tables[name][0]
        assert cols[f"{name} top1 BLEU [0,1]"]["BM25"] == pytest.approx(row["bleu"] / 100)
        assert 0 <= cols[f"{name} top1 BLEU [0,1]"]["BM25"] <= 1
        assert cols[f"{name} top1 ROUGE-L F [0,1]"]["BM25"] == pytest.approx(row["rougeL"])
        assert cols[f"{name} top1 BERTScore F1 [0,1]"]["BM25"] == pytest.approx(row["bertscore_f1"])
        assert cols[f"{name} top1 cosine [-1,1]"]["BM25"] == pytest.approx(row["cosine"])
    one = leaderboard_columns({"table2_text": {"demo-a": tables["demo-a"]}}, 10, [10])  # one source: plain names
    assert set(one) == {"top1 cosine [-1,1]", "top1 BERTScore F1 [0,1]", "top1 BLEU [0,1]", "top1 ROUGE-L F [0,1]"}
