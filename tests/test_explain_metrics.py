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
