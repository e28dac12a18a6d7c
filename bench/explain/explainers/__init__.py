"""Explainers of re-rankers behind one interface: item in, word attributions out.

    from bench.explain.explainers import explain_pair, explain_ranking, PairSettings, RankingSettings
    result = explain_pair(scorer, query, item, ["kernel_shap", "loo", {"name": "lime", "n_samples": 128}],
                          PairSettings(removal="delete"), seed=0, qid="q1")

Pairwise explainers (registry `EXPLAINERS`): kernel_shap, partition_shap, loo, integrated_gradients,
lime, random. Listwise: `explain_ranking` (RankingSHAP). Metrics and their aggregation over queries:
`bench.evaluate.faithfulness`. Exact test cases: `bench.explain.ground_truth`.
"""
from bench.explain.explainers.api import explain_pair, json_safe, run_explainer
from bench.explain.explainers.base import Attribution, Explainer, Unsupported
from bench.explain.explainers.pair import ExplainedPair, WordGame, explained_pair
from bench.explain.explainers.ranking import explain_ranking
from bench.explain.explainers.registry import EXPLAINERS, LISTWISE, describe, get_explainer
from bench.explain.settings import ExplainerSpec, PairSettings, RankingSettings

__all__ = ["EXPLAINERS", "LISTWISE", "Attribution", "ExplainedPair", "Explainer", "ExplainerSpec", "PairSettings",
           "RankingSettings", "Unsupported", "WordGame", "describe", "explain_pair", "explain_ranking",
           "explained_pair", "get_explainer", "json_safe", "run_explainer"]
