"""Re-rank first-stage candidates with a `Scorer` running in a pool of Ray actors.

Each actor loads its model once; batches of (query, item) pairs are spread over the pool.
Documents below the re-rank depth keep their first-stage order underneath the re-ranked ones.
"""
from __future__ import annotations

import contextlib
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
    """Scores chunks for any system, keeping the most recent scorer loaded.

    The pool outlives one system: a run that re-ranks with many systems (the 16 cells of the
    training grid) pays process start-up and imports once, and one model load per system.
    """

    def __init__(self):
        self.spec: ScorerSpec | None = None
        self.scorer = None

    def score(self, spec: ScorerSpec, chunk_id: int, queries: list[str], texts: list[str]) -> tuple[int, np.ndarray]:
        if spec != self.spec:
            from bench.rerank.scorers import build_scorer

            self.scorer = None  # free the previous model before loading the next
            self.scorer, self.spec = build_scorer(spec), spec
        return chunk_id, self.scorer.score(queries, texts)


# Pools by (cluster, pool shape). Actors hold their CPUs, so a pool lives only as long as one
# `score_pairs` call, or across a whole `shared_pool()` block (many systems in a row).
_POOLS: dict[tuple, list] = {}
_KEEP_POOLS = False


@contextlib.contextmanager
def shared_pool():
    """Keep one actor pool across every `score_pairs` call inside the block, then free it."""
    global _KEEP_POOLS
    outer, _KEEP_POOLS = _KEEP_POOLS, True
    try:
        yield
    finally:
        _KEEP_POOLS = outer
        if not outer:
            release_pools()


def release_pools() -> None:
    for actors in _POOLS.values():
        for actor in actors:
            ray.kill(actor)
    _POOLS.clear()


def actor_pool(cfg: RerankConfig) -> ActorPool:
    key = (ray.get_runtime_context().get_node_id(), cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor)
    if key not in _POOLS:
        _POOLS[key] = [ScorerActor.options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor).remote()
                       for _ in range(cfg.actors)]
    return ActorPool(_POOLS[key])


def score_pairs(spec: ScorerSpec, cfg: RerankConfig, queries: list[str], texts: list[str], desc: str) -> np.ndarray:
    """Score many pairs over the actor pool; chunks are a few batches each for load balance."""
    pool = actor_pool(cfg)
    chunk = spec.batch_size * 4
    chunks = [(i, queries[i:i + chunk], texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
    out = np.empty(len(texts), dtype=np.float32)
    try:
        with tqdm(total=len(texts), desc=desc, unit="pair", mininterval=2) as bar:
            for start, scores in pool.map_unordered(lambda a, c: a.score.remote(spec, *c), chunks):
                out[start:start + len(scores)] = scores
                bar.update(len(scores))
    finally:
        if not _KEEP_POOLS:
            release_pools()
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
