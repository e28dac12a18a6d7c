"""Explainers against exact answers, then on real models.

Ground truth (`bench.explain.ground_truth.WordWeightScorer`, a real Scorer whose Shapley and
leave-one-out values are known in closed form): leave-one-out and integrated gradients are exact;
KernelSHAP and Partition SHAP are exact on the additive case; on the interaction case Partition
SHAP is exact (Owen = Shapley for a pairwise term) and KernelSHAP within 0.1 at 256 coalitions;
LIME within 0.06 of the additive weights at 512 samples. RankingSHAP equals the Shapley values of
its ranking game by enumeration. Then every explainer runs on tiny-llama (relevance-token) and
all-MiniLM-L6-v2 (cross-encoder), with the same word units, both sides attributed and the
documented evaluation counts.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.explain.explainers import (EXPLAINERS, ExplainerSpec, PairSettings, RankingSettings, WordGame,
                                      explain_pair, explain_ranking, explained_pair)
from bench.explain.explainers.perturbation import text_order_linkage
from bench.explain.ground_truth import (ADDITIVE, INTERACTION, ITEM, QUERY, WordWeights, WordWeightScorer,
                                        exact_shapley, reference_errors)

NO_METRICS = PairSettings(metrics=False, repeat_seed_offset=None)
ALL = [{"name": "kernel_shap", "nsamples": 256}, {"name": "partition_shap", "max_evals": 500}, "loo",
       {"name": "integrated_gradients", "n_steps": 16}, {"name": "lime", "n_samples": 512}, "random"]


@pytest.fixture(scope="module")
def additive():
    scorer = WordWeightScorer(ADDITIVE)
    return scorer, scorer.exact(QUERY, ITEM), explain_pair(scorer, QUERY, ITEM, ALL, NO_METRICS, seed=0)


@pytest.fixture(scope="module")
def interaction():
    scorer = WordWeightScorer(INTERACTION)
    return scorer, scorer.exact(QUERY, ITEM), explain_pair(scorer, QUERY, ITEM, ALL, NO_METRICS, seed=0)


def values(result, name):
    r = result["explainers"][name]
    assert r["status"] == "ok", r["message"]
    return np.asarray(r["values"])


# ------------------------------------------------------------------------------ ground truth
def test_closed_forms_equal_shapley_by_enumeration():
    for table in (ADDITIVE, INTERACTION):
        scorer = WordWeightScorer(table)
        pair = explained_pair(scorer, QUERY, ITEM)
        enumerated = exact_shapley(WordGame(scorer, pair), pair.n_words)  # 2^10 coalitions through the scorer
        assert np.allclose(enumerated, scorer.exact(QUERY, ITEM)["shapley"], atol=1e-5)


def test_additive_scorer_every_method_recovers_the_weights(additive):
    scorer, exact, result = additive
    assert result["words"] == QUERY.split() + ITEM.split()
    assert np.array_equal(exact["shapley"], exact["loo"])  # additive: Shapley = leave-one-out = weight
    assert np.allclose(values(result, "loo"), exact["loo"], atol=1e-6)
    assert np.allclose(values(result, "integrated_gradients"), exact["shapley"], atol=1e-5)
    assert np.allclose(values(result, "kernel_shap"), exact["shapley"], atol=1e-6)
    assert np.allclose(values(result, "partition_shap"), exact["shapley"], atol=1e-6)
    assert np.max(np.abs(values(result, "lime") - exact["shapley"])) < 0.06
    assert np.max(np.abs(values(result, "random") - exact["shapley"])) > 0.5  # the floor is not an answer


def test_interaction_shapley_splits_the_pair_term_and_leave_one_out_does_not(interaction):
    scorer, exact, result = interaction
    words = result["words"]
    alpine, station = words.index("alpine"), words.index("station")
    # w_a + v/2 for Shapley, w_a + v for leave-one-out (v = 2)
    assert exact["shapley"][[alpine, station]] == pytest.approx([1.0 + 1.0, -0.5 + 1.0])
    assert exact["loo"][[alpine, station]] == pytest.approx([1.0 + 2.0, -0.5 + 2.0])
    assert np.allclose(values(result, "loo"), exact["loo"], atol=1e-6)
    assert np.allclose(values(result, "partition_shap"), exact["shapley"], atol=1e-6)
    assert np.allclose(values(result, "integrated_gradients"), exact["shapley"], atol=1e-5)
    assert np.max(np.abs(values(result, "kernel_shap") - exact["shapley"])) < 0.1  # 256 of 1022 coalitions


def test_evaluation_counts_are_as_documented(additive):
    _, _, result = additive
    n = len(result["words"])
    count = {name: r["evaluations"] for name, r in result["explainers"].items()}
    assert count["loo"] == n + 1  # the full pair, then each word removed
    assert count["kernel_shap"] == 256 + 2  # empty, full, and the sampled coalitions
    assert count["partition_shap"] <= 500
    assert count["lime"] == 512
    assert count["integrated_gradients"] == 16 + 4  # n_steps, plus input and baseline twice (layer, delta)
    assert result["explainers"]["integrated_gradients"]["backward_evaluations"] == 16
    assert count["random"] == 0


def test_masking_and_deleting_agree_when_the_mask_is_an_unknown_word():
    scorer = WordWeightScorer(ADDITIVE)
    settings = PairSettings(removal="mask", mask_token="_", metrics=False, repeat_seed_offset=None)
    masked = explain_pair(scorer, QUERY, ITEM, ["loo"], settings, seed=0)
    assert masked["settings"]["removal"] == "mask"
    assert np.allclose(values(masked, "loo"), scorer.exact(QUERY, ITEM)["loo"])
    pair = explained_pair(scorer, QUERY, ITEM)
    q, d = pair.texts(np.r_[0, 1, np.ones(8)], "mask", "_")
    assert q == "_ trend" and d == ITEM


def test_metrics_of_exact_explanations_on_the_additive_scorer():
    scorer = WordWeightScorer(ADDITIVE)
    result = explain_pair(scorer, QUERY, ITEM, ["loo", "random"], PairSettings(), seed=0, qid="q1")
    loo = result["explainers"]["loo"]["metrics"]
    assert loo["tau_loo"] == pytest.approx(1.0)
    # removing words by their exact weights is the best order on an additive score: NAOPC = 1 and 0
    assert loo["naopc"]["bounds"] == "exact"
    assert loo["naopc"]["naopc_comprehensiveness"] == pytest.approx(1.0)
    assert loo["naopc"]["naopc_sufficiency"] == pytest.approx(0.0)
    assert loo["aopc"]["scheme"] == "eraser" and loo["aopc"]["k"] == [1, 1, 1, 2, 4]  # 8 item words
    rand = result["explainers"]["random"]["metrics"]
    assert rand["aopc"]["aopc_comprehensiveness"] < loo["aopc"]["aopc_comprehensiveness"]
    assert result["explainers"]["loo"]["stability"]["from"] == "deterministic"
    assert result["explainers"]["random"]["stability"]["from"] == "seeds 0 and 1"


def test_reference_errors_report_each_explainer():
    specs = [{"name": "kernel_shap", "nsamples": 256}, "loo", {"name": "integrated_gradients", "n_steps": 8}, "random"]
    report = reference_errors(specs, NO_METRICS, seed=0)
    assert report["loo"]["interaction"]["target"] == "loo" and report["loo"]["interaction"]["max_abs_error"] < 1e-6
    assert report["integrated_gradients"]["interaction"]["max_abs_error"] < 1e-5
    assert report["kernel_shap"]["additive"]["max_abs_error"] < 1e-6
    assert report["random"]["additive"]["max_abs_error"] > 0.5


def test_text_order_linkage_splits_query_from_item_then_contiguous_halves():
    from scipy.cluster import hierarchy

    link = text_order_linkage(4, 10)
    assert hierarchy.is_valid_linkage(link) and hierarchy.is_monotonic(link)
    root = hierarchy.to_tree(link)
    assert root.get_left().pre_order() == [0, 1, 2, 3]  # the query's words
    assert root.get_right().pre_order() == list(range(4, 14))  # the item's words, in text order
    assert root.get_right().get_left().pre_order() == list(range(4, 9))  # then contiguous halves
    assert hierarchy.leaves_list(text_order_linkage(0, 5)).tolist() == [0, 1, 2, 3, 4]


def test_configuration_errors_are_raised_and_item_failures_are_marked():
    scorer = WordWeightScorer(ADDITIVE)
    with pytest.raises(ValueError, match="unknown explainer"):
        explain_pair(scorer, QUERY, ITEM, ["kernelshap"], NO_METRICS)
    with pytest.raises(ValueError, match="unknown parameter"):
        explain_pair(scorer, QUERY, ITEM, [{"name": "lime", "nsamples": 5}], NO_METRICS)
    with pytest.raises(ValueError, match="listed twice"):
        explain_pair(scorer, QUERY, ITEM, ["loo", "loo"], NO_METRICS)
    twice = explain_pair(scorer, QUERY, ITEM, [ExplainerSpec("kernel_shap", {"nsamples": 16}, "ks16"),
                                               {"name": "kernel_shap", "nsamples": 64, "label": "ks64"}], NO_METRICS)
    assert set(twice["explainers"]) == {"ks16", "ks64"}
    assert explain_pair(scorer, "", "  ", ["loo"], NO_METRICS)["status"] == "empty"
    assert set(EXPLAINERS) == {"kernel_shap", "partition_shap", "loo", "integrated_gradients", "lime", "random"}


# ------------------------------------------------------------------------------ RankingSHAP
CANDIDATES = ["alpine ozone station record", "ozone record", "alpine station", "surface record shows trend",
              "ozone at alpine station"]


def enumerated_ranking_shapley(scorer, query: str, candidates: list[str], features: list[str]) -> np.ndarray:
    """The Shapley values of RankingSHAP's game over `features`, by enumerating every coalition."""
    from bench.explain.explainers.ranking import Candidate, RankingGame, _feature_index
    from bench.explain.words import segment

    index = {t: i for i, t in enumerate(features)}
    cands = []
    for item in candidates:
        f = scorer.fit(query, item)
        q, d = segment(f.query), segment(f.item)
        cands.append(Candidate(f.query, f.item, q.word_spans, d.word_spans, _feature_index(q.words, index),
                               _feature_index(d.words, index)))
    return exact_shapley(RankingGame(scorer, cands, len(index), "delete", "_"), len(index))


def test_ranking_shap_equals_enumerated_shapley_of_its_ranking_game():
    scorer = WordWeightScorer(WordWeights({"ozone": 1.0, "alpine": 2.0, "station": -0.5, "record": 0.3,
                                           "surface": 0.2}))
    settings = RankingSettings(max_features=6, nsamples=1000, ks=(1, 2, 6))  # 2^6 - 2 = 62 <= 1000: every coalition
    res = explain_ranking(scorer, "ozone station", CANDIDATES, settings, seed=0, qid="q1")
    assert res["status"] == "ok" and res["features"][:2] == ["ozone", "station"]
    assert res["feature_sides"][:2] == ["query", "query"] and set(res["feature_sides"][2:]) == {"item"}
    exact = enumerated_ranking_shapley(scorer, "ozone station", CANDIDATES, res["features"])
    assert np.allclose(res["values"], exact, atol=1e-6)
    assert sum(res["values"]) == pytest.approx(1.0 - res["base_value"])  # v(all) = 1
    weightless = [i for i, t in enumerate(res["features"]) if t in ("at", "shows", "trend")]
    assert weightless and np.allclose(np.asarray(res["values"])[weightless], 0.0, atol=1e-9)  # dummies
    assert res["metrics"]["validity"]["6"] == pytest.approx(1.0)  # every feature kept: the ranking itself
    assert res["metrics"]["completeness"]["6"] == pytest.approx(res["base_value"])
    # the original ranking, then shap's empty, full and 62 coalitions: each re-scores every candidate
    assert res["evaluations"] == (1 + 2 + 62) * len(CANDIDATES)


def test_ranking_shap_sampled_is_close_and_the_decisive_word_is_valid_and_complete():
    scorer = WordWeightScorer(WordWeights({"alpine": 3.0, "record": 0.5, "ozone": 0.1}))
    candidates = ["alpine station", "ozone record", "alpine ozone", "record trend", "surface shows"]
    res = explain_ranking(scorer, "ozone station", candidates, RankingSettings(max_features=8, nsamples=24), seed=1)
    exact = enumerated_ranking_shapley(scorer, "ozone station", candidates, res["features"])
    assert len(res["features"]) == 7 and np.max(np.abs(np.asarray(res["values"]) - exact)) < 0.05  # 24 of 126
    assert res["features"][int(np.argmax(res["values"]))] == "alpine"
    # alpine alone keeps the order of the alpine / other groups; without it the small weights reorder the list
    assert res["metrics"]["validity"]["1"] > 0.7 > 0.2 > res["metrics"]["completeness"]["1"]


# ------------------------------------------------------------------------------ real models
Q = "tall tower co2 records"
D = "Hourly atmospheric carbon dioxide at twelve European tall towers, 2018-2022."
SMALL = [{"name": "kernel_shap", "nsamples": 32}, {"name": "partition_shap", "max_evals": 32}, "loo",
         {"name": "integrated_gradients", "n_steps": 8, "internal_batch_size": 8}, {"name": "lime", "n_samples": 32},
         "random"]


@pytest.fixture(scope="module")
def tiny_llama():
    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer

    return build_scorer(ScorerSpec(name="tiny", model="tiny-llama", batch_size=64))


@pytest.fixture(scope="module")
def minilm_cross_encoder():
    import torch

    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer

    torch.manual_seed(0)  # the classification head is new: seed its initialisation
    return build_scorer(ScorerSpec(name="minilm-ce", kind="cross-encoder", model="all-minilm-l6-v2", batch_size=64))


def ig_baseline_score(scorer, result) -> float:
    """F(baseline) computed apart: the pad token at every word token, the template kept."""
    import torch

    from bench.explain.explainers.gradients import token_map

    pair = explained_pair(scorer, result["query"], result["item"])
    tokens = token_map(scorer, pair)
    batch = {k: torch.tensor([v]) for k, v in tokens.encoding.items()}
    ids = batch["input_ids"].clone()
    ids[0, torch.tensor(tokens.token_word >= 0)] = scorer.tokenizer.pad_token_id
    with torch.inference_mode():
        return float(scorer.neuron({**batch, "input_ids": ids})[0])


@pytest.mark.parametrize("model", ["tiny_llama", "minilm_cross_encoder"])
def test_every_explainer_on_a_real_model(model, request):
    scorer = request.getfixturevalue(model)
    result = explain_pair(scorer, Q, D, SMALL, PairSettings(naopc=False, repeat_seed_offset=None), seed=3, qid="q1")
    fitted = scorer.fit(Q, D)
    assert result["status"] == "ok" and result["query"] == fitted.query and result["item"] == fitted.item
    assert result["words"] == Q.split() + D.split()  # pieces merged into whitespace words
    assert result["sides"] == ["query"] * 4 + ["item"] * len(D.split())
    ranked = float(scorer.score([Q], [D])[0])
    assert result["full_score"] == pytest.approx(ranked, abs=1e-4)  # the explained input is the ranked one
    n = len(result["words"])
    for name, r in result["explainers"].items():
        assert r["status"] == "ok", (name, r["message"])
        v = np.asarray(r["values"])
        assert len(v) == n and np.all(np.isfinite(v))
        if name != "random":  # both sides get attributions
            assert np.any(v[:4] != 0) and np.any(v[4:] != 0), name
        assert r["metrics"]["aopc"]["scheme"] == "eraser" and r["metrics"]["tau_loo"] is not None
    ex = result["explainers"]
    assert ex["loo"]["evaluations"] == n + 1 and ex["kernel_shap"]["evaluations"] == 32 + 2
    assert ex["lime"]["evaluations"] == 32 and ex["partition_shap"]["evaluations"] <= 32
    assert ex["integrated_gradients"]["evaluations"] == 8 + 4 and ex["random"]["evaluations"] == 0
    kernel = ex["kernel_shap"]
    assert kernel["extras"]["base_value"] + sum(kernel["values"]) == pytest.approx(ranked, abs=1e-3)  # additivity
    # IG: the words' attributions minus the delta make F(input) - F(baseline), both computed apart
    ig = ex["integrated_gradients"]
    assert ig["extras"]["straddling_tokens"] == 0 and ig["extras"]["template_attribution"] == 0.0
    gap = ranked - ig_baseline_score(scorer, result)
    assert sum(ig["values"]) - ig["extras"]["convergence_delta"] == pytest.approx(gap, abs=1e-3)
    # every word's tokens spell the word (so no token of a word is left at its input value)
    from bench.explain.explainers.gradients import token_map

    tokens = token_map(scorer, explained_pair(scorer, Q, D))
    for w, word in enumerate(result["words"]):
        spelled = "".join(t for t, tw in zip(tokens.token_text, tokens.token_word) if tw == w).strip()
        assert spelled.replace(" ", "") == word.replace(" ", ""), (w, word, spelled)


def test_integrated_gradients_is_unsupported_on_a_bi_encoder():
    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(ScorerSpec(name="bi", kind="bi-encoder", model="all-minilm-l6-v2"))
    result = explain_pair(scorer, Q, D, ["integrated_gradients", "loo"], NO_METRICS, seed=0)
    assert result["explainers"]["integrated_gradients"]["status"] == "unsupported"
    assert "bi-encoder" in result["explainers"]["integrated_gradients"]["message"]
    assert result["explainers"]["loo"]["status"] == "ok"


def test_explain_config_lists_explainers_by_registry_name_and_maps_to_settings():
    from pydantic import ValidationError

    from bench.explain.config import ExplainConfig

    cfg = ExplainConfig(explainers=["kernel_shap", {"name": "kernel_shap", "label": "ks512", "params": {"nsamples": 512}},
                                    {"name": "ranking_shap", "params": {"nsamples": 32, "candidates": 4}}],
                        nsamples=64, removal="mask", aopc_bins="ferret", naopc_max_words=40, naopc_exact_max_words=10)
    assert [s.key for s in cfg.explainer_specs()] == ["kernel_shap", "ks512"] and cfg.primary == "kernel_shap"
    # a bare kernel_shap takes explain.nsamples (existing configs keep their meaning); its own params win
    assert [s.params["nsamples"] for s in cfg.explainer_specs()] == [64, 512]
    assert cfg.pair_settings() == PairSettings(removal="mask", aopc_bins="ferret")
    assert cfg.ranking_settings().removal == "mask" and cfg.ranking_settings().nsamples == 32
    assert cfg.ranking_config().candidates == 4
    assert [e.name for e in ExplainConfig().explainers] == ["kernel_shap"]  # the default: KernelSHAP alone
    with pytest.raises(ValidationError, match="unknown explainer 'shap'"):
        ExplainConfig(explainers=[{"name": "shap"}])
    with pytest.raises(ValidationError, match="unknown parameter"):
        ExplainConfig(explainers=[{"name": "integrated_gradients", "params": {"steps": 8}}])
    with pytest.raises(ValidationError, match="listed twice"):
        ExplainConfig(explainers=["loo", "loo"])
    with pytest.raises(ValidationError, match="at least one pairwise explainer"):
        ExplainConfig(explainers=["ranking_shap"])
