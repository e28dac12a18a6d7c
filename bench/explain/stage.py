"""Explain stage: KernelSHAP attributions of re-ranked items in a pool of Ray actors.

Each actor loads the system's scorer once (with the explain batch size) and explains whole
items; the pool size and per-actor resources come from `ExplainConfig`. Every item gets the
same numpy seed, so its attributions do not depend on which actor explained it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import ray
from ray.util import ActorPool
from tqdm.auto import tqdm

from bench.config import ScorerSpec
from bench.explain.config import ExplainConfig

log = logging.getLogger("bench")


@dataclass
class ExplainJob:
    """One (query, item) pair to explain, with where it came from."""

    system: str
    dataset: str
    qid: str
    docid: str
    rank: int
    score: float
    query: str
    text: str
    url: str = ""
    title: str = ""


def explain_spec(spec: ScorerSpec, cfg: ExplainConfig) -> ScorerSpec:
    """The scorer as the explain stage runs it: large padded batches of coalitions."""
    return spec.model_copy(update={"batch_size": cfg.batch_size})


@ray.remote
class ExplainActor:
    def __init__(self, spec: ScorerSpec, cfg: ExplainConfig, threads: int):
        import torch

        from bench.rerank.scorers import build_scorer

        torch.set_num_threads(max(1, threads))
        self.cfg = cfg
        self.scorer = build_scorer(explain_spec(spec, cfg))

    def explain(self, index: int, job: ExplainJob, seed: int) -> tuple[int, dict]:
        from bench.explain.kernel_shap import explain_item

        try:
            result = explain_item(self.scorer, job.query, job.text, self.cfg, seed)
        except Exception as e:  # one broken item must not lose the others
            log.exception("explain: %s/%s failed", job.qid, job.docid)
            result = {"status": "error", "message": f"{type(e).__name__}: {e}", "topk": [], "words": [],
                      "word_values": [], "tokens": [], "token_values": None, "erasure": {}}
        return index, {**asdict(job), **result}


def explain_jobs(spec: ScorerSpec, cfg: ExplainConfig, jobs: list[ExplainJob], seed: int) -> list[dict]:
    """Explain every job over a fresh actor pool; results come back in job order."""
    if not jobs:
        return []
    n_actors = min(cfg.actors, len(jobs))
    actors = [ExplainActor.options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor)
              .remote(spec, cfg, int(cfg.cpus_per_actor)) for _ in range(n_actors)]
    pool = ActorPool(actors)
    results: list[dict | None] = [None] * len(jobs)
    try:
        with tqdm(total=len(jobs), desc=f"explain {spec.name}", unit="item", mininterval=2) as bar:
            for i, res in pool.map_unordered(lambda a, ij: a.explain.remote(*ij, seed), list(enumerate(jobs))):
                results[i] = res
                bar.update(1)
                log.info("explain %s: %s/%s %s in %.1fs", spec.name, res["qid"], res["docid"], res["status"],
                         res.get("seconds", 0.0))
    finally:
        for a in actors:
            ray.kill(a)
    return results  # type: ignore[return-value]

