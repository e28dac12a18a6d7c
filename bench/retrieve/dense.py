"""Dense and hybrid first stages: a sentence-transformers bi-encoder with exact search.

    dense   cosine of normalised embeddings (the bi-encoder scorer's own model and truncation),
            exact search over the whole corpus; the corpus embeddings are a cached artifact
            (`results/<exp>/embed/<key>/corpus.npy`, key = model fingerprint + the data
            artifact + settings), so a second run or a second experiment over the same data
            does not encode again
    hybrid  BM25 and dense fused: reciprocal-rank fusion, sum_r 1 / (k + rank_r(d)) (Cormack et
            al., 2009; k = 60), or a weighted sum of min-max normalised scores

Both depth-limited like BM25; BRIGHT's excluded ids are never ranked.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bench.config import RetrieveConfig, ScorerSpec
from bench.data.collection import Run, trec_order

log = logging.getLogger("bench")



def bi_encoder_spec(cfg: RetrieveConfig) -> ScorerSpec:
    return ScorerSpec(name="dense", kind="bi-encoder", model=cfg.model, batch_size=cfg.encode_batch_size,
                      max_length=cfg.max_length)


def corpus_embeddings(pipeline, ds, cfg: RetrieveConfig) -> tuple[list[str], np.ndarray]:
    """(docids, normalised embeddings) of the whole corpus, from the cache or encoded now."""
    from bench.artifacts import content_hash
    from bench.codehash import code_fingerprint
    from bench.models import model_fingerprint
    from bench.provenance import library_versions
    from bench.rerank.scorers import build_scorer

    docids = list(ds.collection.corpus)
    key = content_hash("embed", code_fingerprint("bench.retrieve.dense"), ds.key, model_fingerprint(cfg.model),
                       cfg.max_length, cfg.title_field, library_versions("rerank"))

    def build(tmp: Path) -> None:
        import os

        import torch

        torch.set_num_threads(os.cpu_count() or 1)  # the driver has the machine to itself here
        encoder = build_scorer(bi_encoder_spec(cfg))
        texts = [_text(ds.collection.corpus[d], cfg) for d in docids]
        items = [encoder.fit("", t).item for t in texts]  # the same truncation as when it scores
        emb = encoder.embed(items).astype(np.float32)
        np.save(tmp / "corpus.npy", emb)
        (tmp / "docids.txt").write_text("\n".join(docids) + "\n", encoding="utf-8")

    def load(path: Path):
        ids = (path / "docids.txt").read_text(encoding="utf-8").splitlines()
        return ids, np.load(path / "corpus.npy")

    return pipeline.cache.get_or_build("embed", key, build, load, label=f"{cfg.model} on {ds.name}")


def _text(doc, cfg: RetrieveConfig) -> str:
    return f"{doc.title} {doc.text}".strip() if cfg.title_field and doc.title else doc.text


def dense_run(pipeline, ds, cfg: RetrieveConfig, name: str = "Dense") -> Run:
    from bench.rerank.scorers import build_scorer

    docids, emb = corpus_embeddings(pipeline, ds, cfg)
    col = ds.collection
    qids = list(col.queries)
    encoder = build_scorer(bi_encoder_spec(cfg))
    q_emb = encoder.embed([encoder.fit(col.queries[q], "").query for q in qids])
    scores = q_emb @ emb.T  # cosine: both sides are normalised
    run: dict[str, dict[str, float]] = {}
    extra = max((len(v) for v in col.excluded.values()), default=0)
    k = min(cfg.depth + extra, len(docids))
    for row, qid in enumerate(qids):
        top = np.argpartition(-scores[row], k - 1)[:k]
        top = top[np.lexsort((np.array([docids[i] for i in top]), -scores[row][top]))]
        excluded = set(col.excluded.get(qid, ()))
        ranked = {}
        for j in top:
            if docids[j] not in excluded:
                ranked[docids[j]] = float(scores[row][j])
            if len(ranked) == cfg.depth:
                break
        run[qid] = ranked
    return Run(name, run)


def reciprocal_rank_fusion(runs: list[Run], k: int = 60, depth: int | None = None, name: str = "Hybrid") -> Run:
    """sum over runs of 1 / (k + rank), rank 1-based within each run."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid in run.scores:
            target = fused.setdefault(qid, {})
            for rank, (docid, _) in enumerate(run.ranked(qid), start=1):
                target[docid] = target.get(docid, 0.0) + 1.0 / (k + rank)
    return Run(name, {q: dict(trec_order(d)[:depth]) for q, d in fused.items()})


def score_fusion(runs: list[Run], weights: list[float], depth: int | None = None, name: str = "Hybrid") -> Run:
    """Weighted sum of each run's min-max normalised scores (a document a run lacks gets 0 from it)."""
    fused: dict[str, dict[str, float]] = {}
    for run, w in zip(runs, weights):
        for qid, docs in run.scores.items():
            if not docs:
                continue
            lo, hi = min(docs.values()), max(docs.values())
            target = fused.setdefault(qid, {})
            for docid, s in docs.items():
                target[docid] = target.get(docid, 0.0) + w * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    return Run(name, {q: dict(trec_order(d)[:depth]) for q, d in fused.items()})


def dense_or_hybrid_run(pipeline, ds, cfg: RetrieveConfig, method: str) -> Run:
    dense = dense_run(pipeline, ds, cfg)
    if method == "dense":
        return dense
    from bench.retrieve.bm25 import bm25_run

    bm25 = bm25_run(ds.collection, cfg)
    if cfg.fusion == "rrf":
        return reciprocal_rank_fusion([bm25, dense], cfg.rrf_k, cfg.depth)
    return score_fusion([bm25, dense], list(cfg.fusion_weights), cfg.depth)
