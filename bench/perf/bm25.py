"""BM25 throughput: bm25s vs rank-bm25 on BEIR SciFact, same tokens, measured in one run."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.config import BeirSource, RetrieveConfig
from bench.data.collection import Run
from bench.evaluate.ir import aggregate, per_query

SCIFACT = Path("../shared/data/beir/scifact")


def run(out_dir: Path) -> dict:
    import bm25s
    from rank_bm25 import BM25Okapi

    from bench.data.loaders import load_beir
    from bench.retrieve.bm25 import BM25Index

    if not SCIFACT.is_dir():
        return {"skipped": f"SciFact not found at {SCIFACT}"}
    col = load_beir(BeirSource(name="scifact", loader="beir", path=SCIFACT))
    cfg = RetrieveConfig(depth=100)
    docids = list(col.corpus)
    texts = [col.corpus[d].full_text() for d in docids]
    qids = list(col.queries)
    queries = [col.queries[q] for q in qids]

    t0 = time.perf_counter()
    index = BM25Index(texts, cfg)
    bm25s_index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx, scores = index.search(queries, k=cfg.depth)
    bm25s_search_s = time.perf_counter() - t0
    run_s = Run("bm25s", {q: {docids[int(j)]: float(s) for j, s in zip(idx[i], scores[i])} for i, q in enumerate(qids)})

    # rank-bm25 on exactly the same token lists (bm25s tokenizer, stemmer, stopwords).
    vocab_tokens = bm25s.tokenize(texts, stopwords=cfg.stopwords, stemmer=index.stemmer, return_ids=False,
                                  show_progress=False)
    query_tokens = bm25s.tokenize(queries, stopwords=cfg.stopwords, stemmer=index.stemmer, return_ids=False,
                                  show_progress=False)
    t0 = time.perf_counter()
    okapi = BM25Okapi(vocab_tokens, k1=cfg.k1, b=cfg.b)
    rank_index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = {}
    for q, toks in zip(qids, query_tokens):
        s = okapi.get_scores(toks)
        top = np.argsort(-s)[: cfg.depth]
        ranked[q] = {docids[int(j)]: float(s[j]) for j in top}
    rank_search_s = time.perf_counter() - t0
    run_r = Run("rank-bm25", ranked)

    def ndcg(r: Run) -> float:
        return float(aggregate(per_query(r, col.qrels, ["nDCG@10"], "scifact")).iloc[0]["nDCG@10"])

    n = len(queries)
    result = {
        "dataset": "BEIR SciFact test (300 queries, 5183 docs)",
        "bm25s": {"index_s": bm25s_index_s, "search_s": bm25s_search_s, "queries_per_s": n / bm25s_search_s,
                  "nDCG@10": ndcg(run_s), "variant": cfg.variant},
        "rank_bm25": {"index_s": rank_index_s, "search_s": rank_search_s, "queries_per_s": n / rank_search_s,
                      "nDCG@10": ndcg(run_r), "variant": "BM25Okapi"},
    }
    result["speedup_queries_per_s"] = result["bm25s"]["queries_per_s"] / result["rank_bm25"]["queries_per_s"]
    return result
