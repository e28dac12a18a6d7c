"""KernelSHAP attributions of one (query, item) pair under any `Scorer`, with the real shap library.

The features are the item's words (or tokens); a coalition is a 0/1 vector over them. shap's
`KernelExplainer` is given a background of one all-absent row and explains the all-present row,
so each sampled coalition is a row of 0s and 1s. It hands the model function every coalition
of an item at once (one call for the empty item, one for the full item, one for all samples);
`CoalitionModel` turns them into texts and scores them through the Scorer in large padded
batches, never one call per coalition.

`l1_reg` is always passed explicitly: shap's default for `shap_values` is "num_features(10)",
which silently gives all but 10 features a value of exactly zero.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from bench.explain.config import ExplainConfig
from bench.explain.words import Segmentation, compose, segment, word_values_from_tokens

log = logging.getLogger("bench")


class CoalitionModel:
    """The model function shap calls: coalition matrix (n x M) -> n scores, batched."""

    def __init__(self, scorer, query: str, seg: Segmentation, unit: str, removal: str, mask_token: str):
        self.scorer, self.query, self.seg = scorer, query, seg
        self.unit, self.removal, self.mask_token = unit, removal, mask_token
        _, self.spans = seg.units(unit)
        self.calls = 0
        self.rows = 0

    def texts(self, Z: np.ndarray) -> list[str]:
        return [compose(self.seg.text, self.spans, z > 0.5, self.removal, self.mask_token) for z in np.atleast_2d(Z)]

    def score_texts(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.rows += len(texts)
        return np.asarray(self.scorer.score([self.query] * len(texts), texts), dtype=np.float64)

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        return self.score_texts(self.texts(Z))


def shap_l1(value: Any):
    """Config value -> shap's `l1_reg` argument ('none' means no feature selection)."""
    if value == "none":
        return False
    return value


def item_tokenizer(scorer):
    return getattr(scorer, "tokenizer", None)


def explained_input(scorer, query: str, text: str, cfg: ExplainConfig) -> tuple[str, str, dict]:
    """(query, item, how): the pair exactly as the scorer ranked it (`Scorer.fit`: the one rule of
    bench.rerank.prompts), or its first `explain.max_item_tokens` item tokens when that is set."""
    from bench.rerank.prompts import cut_to_tokens

    fitted = scorer.fit(query, text)
    item, how = fitted.item, {"query_cut": fitted.query_cut, "item_cut": fitted.item_cut, "explained": "as ranked"}
    if cfg.max_item_tokens is not None:
        item, cut = cut_to_tokens(item_tokenizer(scorer), item, cfg.max_item_tokens)
        if cut:
            how["explained"] = f"the ranked item's first {cfg.max_item_tokens} tokens (explain.max_item_tokens)"
    return fitted.query, item, how


def kernel_shap_values(model: CoalitionModel, n_units: int, nsamples: int, l1_reg, seed: int) -> tuple[np.ndarray, float]:
    """Shapley value estimates for the units, and the base value (score of the empty item)."""
    import shap

    logging.getLogger("shap").setLevel(logging.WARNING)  # shap logs every sampling step at debug level
    np.random.seed(seed)  # shap samples coalitions with numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap warns about l1_reg / nsamples trade-offs per item
        explainer = shap.KernelExplainer(model, np.zeros((1, n_units)))
        values = explainer.shap_values(np.ones((1, n_units)), nsamples=nsamples, l1_reg=shap_l1(l1_reg), silent=True)
    values = np.asarray(values, dtype=np.float64).reshape(-1)[:n_units]
    base = float(np.asarray(explainer.expected_value).reshape(-1)[0])
    return values, base


def top_k(words: list[str], values: np.ndarray, k: int) -> list[dict]:
    """The k words with the largest (signed) attribution: the evidence *for* relevance."""
    order = sorted(range(len(words)), key=lambda i: (-values[i], i))[:k]
    return [{"index": i, "word": words[i], "value": float(values[i])} for i in order]


def erasure_scores(model: CoalitionModel, seg: Segmentation, word_values: np.ndarray, ks: list[int],
                   seed: int) -> dict[str, dict[str, float]]:
    """Scores with the top-k words removed / kept alone / k random words removed, for each k.

    Computed in one batched call; these feed ERASER comprehensiveness and sufficiency.
    """
    n_words = len(seg.words)
    order = sorted(range(n_words), key=lambda i: (-word_values[i], i))
    rng = np.random.default_rng(seed)
    word_of_unit = np.arange(n_words) if model.unit == "word" else np.asarray(seg.token_word)
    rows, labels = [], []
    for k in ks:
        kk = min(k, n_words)
        top = np.zeros(n_words, dtype=bool)
        top[order[:kk]] = True
        rand = np.zeros(n_words, dtype=bool)
        rand[rng.choice(n_words, size=kk, replace=False)] = True
        for name, removed_words in (("removed", top), ("kept", ~top), ("random", rand)):
            rows.append(~removed_words[word_of_unit])  # unit present unless its word is removed
            labels.append((str(k), name))
    if not rows:
        return {}
    scores = model(np.asarray(rows, dtype=np.float64))
    out: dict[str, dict[str, float]] = {}
    for (k, name), s in zip(labels, scores):
        out.setdefault(k, {})[name] = float(s)
    return out


def explain_item(scorer, query: str, text: str, cfg: ExplainConfig, seed: int) -> dict:
    """Attributions, top-k words and erasure scores of one item; never raises on bad items."""
    started = time.perf_counter()
    query, item, how = explained_input(scorer, query, text, cfg)
    seg = segment(item, item_tokenizer(scorer))
    units, _ = seg.units(cfg.unit)
    base = {"unit": cfg.unit, "removal": cfg.removal, "text": seg.text, "truncated": how["item_cut"] or
            how["explained"] != "as ranked", "input": how, "scored_query": query,
            "tokens": seg.tokens, "token_word": seg.token_word, "words": seg.words}
    if not units:
        return {**base, "status": "empty", "message": "item has no tokens to attribute (empty text)",
                "token_values": [], "word_values": [], "topk": [], "k": 0, "k_clamped": cfg.k > 0,
                "erasure": {}, "seconds": round(time.perf_counter() - started, 4)}
    model = CoalitionModel(scorer, query, seg, cfg.unit, cfg.removal, cfg.mask_token)
    values, base_value = kernel_shap_values(model, len(units), cfg.nsamples, cfg.l1_reg, seed)
    shap_rows = model.rows
    if cfg.unit == "word":
        word_values, token_values = values, None
    else:
        token_values = values
        word_values = word_values_from_tokens(values, seg.token_word, len(seg.words))
    k = min(cfg.k, len(seg.words))
    full_score = float(base_value + values.sum())  # additivity: f(x) = E[f] + sum(phi)
    erasure = erasure_scores(model, seg, word_values, cfg.ks, seed)
    status, message = "ok", ""
    if k < cfg.k:
        status, message = "k_clamped", f"item has {len(seg.words)} words, fewer than k={cfg.k}; top-k clamped to {k}"
    return {**base, "status": status, "message": message,
            "token_values": None if token_values is None else [float(v) for v in token_values],
            "word_values": [float(v) for v in word_values], "base_value": base_value, "full_score": full_score,
            "topk": top_k(seg.words, word_values, k), "k": k, "k_clamped": k < cfg.k,
            "erasure": erasure, "coalitions": shap_rows, "forward_rows": model.rows, "forward_calls": model.calls,
            "seconds": round(time.perf_counter() - started, 4)}
