"""RankingSHAP (Heuss, de Rijke, Anand 2024): a listwise explanation of one query's ranking.

Implemented from the paper's definition (its reference code is GPL-3 and was not used).
Features are word types: the query's words, then the words found in the most candidates (ties:
first occurrence), up to `max_features`; a type is lower-cased and stripped of surrounding
punctuation, and one feature stands for every occurrence of it, in the query and in every
candidate. Words outside the feature set are always kept. The value of a feature set S is the rank
similarity (Kendall tau) between the original ranking of the candidates and their ranking once
every feature NOT in S is removed (deleted or masked, `removal`) from every candidate:
v(all) = 1, and the attributions sum to 1 - v(empty). The values are estimated with
`shap.KernelExplainer` over the feature-presence vector (background: all absent); every coalition
re-scores all N candidates in one batched call, so a coalition costs N model rows.

Metrics of the explanation (the paper's): validity@k = tau with only the top-k features kept
(higher: the explanation alone reproduces the ranking), completeness@k = tau with the top-k
features removed (lower: without them the ranking falls apart).
"""
from __future__ import annotations

import string
import time
from dataclasses import asdict, dataclass

import numpy as np

from bench.evaluate.faithfulness import rank_similarity
from bench.explain.explainers.api import json_safe
from bench.explain.explainers.pair import ITEM, QUERY
from bench.explain.settings import RankingSettings, Removal
from bench.explain.words import compose, segment

_PUNCTUATION = string.punctuation + "“”‘’«»"


def word_type(word: str) -> str:
    return word.strip(_PUNCTUATION).lower()


@dataclass(frozen=True)
class Candidate:
    """One candidate as ranked, and the feature of each of its query and item words (-1: none)."""

    query: str
    item: str
    query_spans: list
    item_spans: list
    query_feature: np.ndarray
    item_feature: np.ndarray

    def texts(self, present: np.ndarray, removal: Removal, mask_token: str) -> tuple[str, str]:
        keep_q = np.where(self.query_feature >= 0, present[np.maximum(self.query_feature, 0)], 1)
        keep_d = np.where(self.item_feature >= 0, present[np.maximum(self.item_feature, 0)], 1)
        return (compose(self.query, self.query_spans, keep_q, removal, mask_token),
                compose(self.item, self.item_spans, keep_d, removal, mask_token))


def select_features(query_words: list[str], items_words: list[list[str]],
                    max_features: int) -> tuple[list[str], list[str]]:
    """(feature types, side of each): the query's types, then the types in most candidates."""
    features = list(dict.fromkeys(t for t in map(word_type, query_words) if t))[:max_features]
    document_frequency: dict[str, int] = {}
    for words in items_words:
        for t in dict.fromkeys(t for t in map(word_type, words) if t):
            document_frequency[t] = document_frequency.get(t, 0) + 1
    first = list(document_frequency)  # insertion order = first occurrence
    ranked = sorted((t for t in first if t not in features), key=lambda t: (-document_frequency[t], first.index(t)))
    features += ranked[: max(0, max_features - len(features))]
    in_query = set(map(word_type, query_words))
    return features, [QUERY if t in in_query else ITEM for t in features]


class RankingGame:
    """Feature-presence matrix (n x F) -> n rank similarities with the original ranking."""

    def __init__(self, scorer, candidates: list[Candidate], n_features: int, removal: Removal, mask_token: str):
        self.scorer, self.candidates = scorer, candidates
        self.removal, self.mask_token = removal, mask_token
        self.rows = 0
        self.original = self.scores(np.ones((1, n_features)))[0]  # the ranking as the scorer made it

    def scores(self, Z: np.ndarray) -> np.ndarray:
        Z = (np.atleast_2d(np.asarray(Z, dtype=np.float64)) > 0.5).astype(np.int8)
        texts = [c.texts(z, self.removal, self.mask_token) for z in Z for c in self.candidates]
        self.rows += len(texts)
        flat = np.asarray(self.scorer.score([q for q, _ in texts], [d for _, d in texts]), dtype=np.float64)
        return flat.reshape(len(Z), len(self.candidates))

    def __call__(self, Z) -> np.ndarray:
        return np.array([rank_similarity(self.original, s) for s in self.scores(Z)])


def _feature_index(words: list[str], index: dict[str, int]) -> np.ndarray:
    return np.array([index.get(word_type(w), -1) for w in words], dtype=np.int64)


def explain_ranking(scorer, query: str, items: list[str], settings: RankingSettings = RankingSettings(),
                    seed: int = 0, *, qid: str | None = None) -> dict:
    """RankingSHAP values of one query's candidates (as the scorer ranks them), and validity /
    completeness at `settings.ks`. JSON-able."""
    from bench.explain.kernel_shap import kernel_shap_values

    started = time.perf_counter()
    fitted = [scorer.fit(query, item) for item in items]
    segs = [(segment(f.query), segment(f.item)) for f in fitted]
    features, sides = select_features(segs[0][0].words if segs else [], [d.words for _, d in segs],
                                      settings.max_features)
    index = {t: i for i, t in enumerate(features)}
    candidates = [Candidate(f.query, f.item, q.word_spans, d.word_spans, _feature_index(q.words, index),
                            _feature_index(d.words, index)) for f, (q, d) in zip(fitted, segs)]
    out = {"explainer": "ranking_shap", "library": "shap.KernelExplainer", "qid": qid, "query": query,
           "n_candidates": len(items), "features": features, "feature_sides": sides,
           "settings": {**asdict(settings), "ks": list(settings.ks)}, "seed": seed}
    if len(items) < 2 or not features:
        return {**out, "status": "empty", "message": "needs two candidates and at least one word feature",
                "values": [], "evaluations": 0, "seconds": round(time.perf_counter() - started, 4)}
    game = RankingGame(scorer, candidates, len(features), settings.removal, settings.mask_token)
    values, base = kernel_shap_values(game, len(features), settings.nsamples, settings.l1_reg, seed)
    evaluations, seconds = game.rows, time.perf_counter() - started
    metrics = ranking_metrics(game, values, settings.ks)
    return json_safe({**out, "status": "ok", "message": "", "values": [float(v) for v in values], "base_value": base,
                      "original_scores": [float(s) for s in game.original], "evaluations": evaluations,
                      "seconds": round(seconds, 4), "metrics": metrics, "metric_evaluations": game.rows - evaluations})


def ranking_metrics(game: RankingGame, values: np.ndarray, ks) -> dict:
    """validity@k and completeness@k of the top-k features (one batched call for all k)."""
    n = len(values)
    order = np.argsort(-np.asarray(values), kind="stable")
    rows, labels = [], []
    for k in sorted(set(ks)):
        kk = min(k, n)
        top = np.zeros(n, dtype=np.int8)
        top[order[:kk]] = 1
        rows += [top, 1 - top]
        labels += [("validity", k), ("completeness", k)]
    taus = game(np.array(rows))
    out: dict = {"validity": {}, "completeness": {}}
    for (name, k), tau in zip(labels, taus):
        out[name][str(k)] = float(tau)
    return out
