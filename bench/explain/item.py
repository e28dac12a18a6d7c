"""One item through every configured explainer: the explain stage's per-item computation.

The data plane's explain task calls `explain_one` (one re-ranked item) and `explain_query_ranking`
(one query's ranking, RankingSHAP) with the actor's loaded scorer; the top-k and model-size ablations
call `explain_one` too, so every attribution of the project comes from one place:
`bench.explain.explainers.explain_pair` with the explain slice's explainers and settings.

`explain_one` returns the explainer library's result for the pair (every explainer's values over the
pair's words - query words, then item words -, its cost in model rows and seconds, its metrics) and,
from the primary explainer (the first pairwise one), what the reason prompt, Fig. 4, Table 3 and the
leaderboard's comp@k / suff@k read: the item's words and their values, the top-k item words, and
the scores of the pair with the top-k item words removed / kept alone / k random item words removed,
for each k of `explain.ks` (the query is always kept, as in ERASER).
"""
from __future__ import annotations

import time

import numpy as np

from bench.explain.config import ExplainConfig

ERASURE = ("removed", "kept", "random")


def top_k(words: list[str], values, k: int) -> list[dict]:
    """The k words with the largest (signed) attribution: the evidence *for* relevance."""
    order = sorted(range(len(words)), key=lambda i: (-values[i], i))[:k]
    return [{"index": i, "word": words[i], "value": float(values[i])} for i in order]


def erasure_presence(n_query: int, item_values, ks, seed: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Presence rows over the pair's words (query words always present) for each k of `ks`: the top-k
    item words removed, only the top-k item words kept, k random item words removed (numpy's
    default_rng(seed), drawn k by k in the order of ks)."""
    n = len(item_values)
    order = sorted(range(n), key=lambda i: (-item_values[i], i))
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k in ks:
        kk = min(int(k), n)
        top = np.zeros(n, dtype=bool)
        top[order[:kk]] = True
        rand = np.zeros(n, dtype=bool)
        rand[rng.choice(n, size=kk, replace=False)] = True
        for name, removed in (("removed", top), ("kept", ~top), ("random", rand)):
            rows.append(np.concatenate([np.ones(n_query, dtype=np.int8), (~removed).astype(np.int8)]))
            labels.append((str(k), name))
    return np.asarray(rows, dtype=np.int8).reshape(len(rows), n_query + n), labels


def fitted_input(scorer, query: str, text: str, cfg: ExplainConfig) -> tuple[str, str, dict]:
    """(query, item, how): the pair as the scorer ranked it (the one fitting rule), or its item's first
    `explain.max_item_tokens` tokens."""
    from bench.explain.kernel_shap import explained_input

    return explained_input(scorer, query, text, cfg)


def explain_one(scorer, query: str, text: str, cfg: ExplainConfig, seed: int, *, qid: str | None = None,
                ks=None) -> dict:
    """Every explainer of `cfg` on one (query, item) pair, with their metrics; never raises on a bad item.
    `ks`: the k values of the erasure scores (default `cfg.ks`)."""
    from bench.explain.explainers import WordGame, explain_pair, explained_pair
    from bench.explain.words import segment

    started = time.perf_counter()
    ks = list(cfg.ks if ks is None else ks)
    fq, item, how = fitted_input(scorer, query, text, cfg)
    seg = segment(item, getattr(scorer, "tokenizer", None))
    base = {"unit": "word", "removal": cfg.removal, "text": seg.text, "input": how, "scored_query": fq,
            "truncated": bool(how["item_cut"]) or how["explained"] != "as ranked", "tokens": seg.tokens,
            "token_word": seg.token_word, "words": seg.words, "token_values": None, "primary": cfg.primary}
    if not seg.words:
        return {**base, "status": "empty", "message": "item has no tokens to attribute (empty text)",
                "word_values": [], "topk": [], "k": 0, "k_clamped": cfg.k > 0, "erasure": {}, "explainers": {},
                "seconds": round(time.perf_counter() - started, 4)}
    res = explain_pair(scorer, fq, item, cfg.explainer_specs(), cfg.pair_settings(), seed, qid=qid)
    sides = res["sides"]
    n_query = sum(s == "query" for s in sides)
    out = {**base, "pair_words": res["words"], "sides": sides, "settings": res["settings"],
           "explainers": res["explainers"], "full_score": res.get("full_score"),
           "metric_evaluations": res.get("metric_evaluations", 0)}
    primary = res["explainers"].get(cfg.primary, {})
    if res.get("status") != "ok" or primary.get("status") != "ok":
        why = res.get("message") or f"{primary.get('status')}: {primary.get('message')}"
        return {**out, "status": "error", "message": f"primary explainer {cfg.primary}: {why}", "word_values": [],
                "topk": [], "k": 0, "k_clamped": False, "erasure": {},
                "seconds": round(time.perf_counter() - started, 4)}
    values = np.asarray(primary["values"], dtype=np.float64)
    item_values = values[n_query:]
    if len(item_values) != len(seg.words):  # the library segments the same item with the same tokenizer
        raise RuntimeError(f"{len(item_values)} item values for {len(seg.words)} item words")
    pair = explained_pair(scorer, fq, item)
    game = WordGame(scorer, pair, cfg.removal, cfg.mask_token, cache=True)
    rows, labels = erasure_presence(n_query, item_values, ks, seed)
    scores = game(rows) if len(rows) else []
    erasure: dict[str, dict[str, float]] = {}
    for (k, name), s in zip(labels, scores):
        erasure.setdefault(k, {})[name] = float(s)
    k = min(cfg.k, len(seg.words))
    status, message = "ok", ""
    if k < cfg.k:
        status, message = "k_clamped", f"item has {len(seg.words)} words, fewer than k={cfg.k}; top-k clamped to {k}"
    extras = primary.get("extras") or {}
    return {**out, "status": status, "message": message, "word_values": [float(v) for v in item_values],
            "query_values": [float(v) for v in values[:n_query]], "base_value": extras.get("base_value"),
            "topk": top_k(seg.words, item_values, k), "k": k, "k_clamped": k < cfg.k, "erasure": erasure,
            "erasure_evaluations": game.rows, "evaluations": total_evaluations(res["explainers"]) +
            out["metric_evaluations"] + game.rows, "seconds": round(time.perf_counter() - started, 4)}


def total_evaluations(explainers: dict) -> int:
    """Model rows the explainers spent on an item, their stability reruns included."""
    return int(sum((r.get("evaluations") or 0) + ((r.get("stability") or {}).get("evaluations") or 0)
                   for r in explainers.values()))


def explain_query_ranking(scorer, query: str, texts: list[str], cfg: ExplainConfig, seed: int, *,
                          qid: str | None = None) -> dict:
    """RankingSHAP of one query's top re-ranked candidates (each cut like an explained item)."""
    from bench.explain.explainers import explain_ranking

    fitted = [fitted_input(scorer, query, t, cfg) for t in texts]
    query = fitted[0][0] if fitted else query
    return explain_ranking(scorer, query, [item for _, item, _ in fitted], cfg.ranking_settings(), seed, qid=qid)
