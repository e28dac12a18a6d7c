"""Re-rank first-stage candidates with a `Scorer` running in a pool of Ray actors.

Each actor loads its model once; batches of (query, item) pairs are spread over the pool.
Documents below the re-rank depth keep their first-stage order underneath the re-ranked ones.
"""
from __future__ import annotations

import logging

import numpy as np
import ray
from ray.util import ActorPool
from tqdm.auto import tqdm

from bench.config import RerankConfig, ScorerSpec
from bench.data.collection import Collection, Run

log = logging.getLogger("bench")


@ray.remote
class ScorerActor:
    def __init__(self, spec: ScorerSpec):
        from bench.rerank.scorers import build_scorer

        self.scorer = build_scorer(spec)

    def score(self, chunk_id: int, queries: list[str], texts: list[str]) -> tuple[int, np.ndarray]:
        return chunk_id, self.scorer.score(queries, texts)


def make_actor_pool(spec: ScorerSpec, cfg: RerankConfig) -> tuple[ActorPool, list]:
    actors = [ScorerActor.options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor).remote(spec)
              for _ in range(cfg.actors)]
    return ActorPool(actors), actors


def score_pairs(spec: ScorerSpec, cfg: RerankConfig, queries: list[str], texts: list[str], desc: str) -> np.ndarray:
    """Score many pairs over a fresh actor pool; chunks are a few batches each for load balance."""
    pool, actors = make_actor_pool(spec, cfg)
    chunk = spec.batch_size * 4
    chunks = [(i, queries[i:i + chunk], texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
    out = np.empty(len(texts), dtype=np.float32)
    try:
        with tqdm(total=len(texts), desc=desc, unit="pair", mininterval=2) as bar:
            for start, scores in pool.map_unordered(lambda a, c: a.score.remote(*c), chunks):
                out[start:start + len(scores)] = scores
                bar.update(len(scores))
    finally:
        for a in actors:
            ray.kill(a)
    return out


def rerank_run(col: Collection, first_stage: Run, qids: list[str], spec: ScorerSpec, cfg: RerankConfig) -> Run:
    pairs = [(qid, docid) for qid in qids for docid, _ in first_stage.ranked(qid, cfg.depth)]
    scores = score_pairs(spec, cfg, [col.queries[q] for q, _ in pairs],
                         [col.corpus[d].full_text() for _, d in pairs], desc=f"rerank {spec.name}")
    reranked: dict[str, dict[str, float]] = {}
    for (qid, docid), s in zip(pairs, scores):
        reranked.setdefault(qid, {})[docid] = float(s)
    for qid in qids:
        top = reranked.setdefault(qid, {})
        floor = min(top.values(), default=0.0)
        for i, (docid, _) in enumerate(first_stage.ranked(qid)[cfg.depth:]):
            top[docid] = floor - 1.0 - i  # below every re-ranked item, first-stage order kept
    return Run(spec.name, reranked)
