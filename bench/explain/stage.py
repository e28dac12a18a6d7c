"""Explain stage: KernelSHAP attributions of re-ranked items, on the data plane (`bench.plane`).

Each plane actor loads the system's scorer once (with the explain batch size: coalitions are
scored in large padded batches) and explains whole items; the pool size and per-actor resources
come from `ExplainConfig`. Every item gets the same numpy seed, so its attributions do not
depend on which actor explained it, nor on a retry after a worker died.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

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


def explain_jobs(spec: ScorerSpec, cfg: ExplainConfig, jobs: list[ExplainJob], seed: int) -> list[dict]:
    """Explain every job on the data plane; results come back in job order."""
    from bench.plane import PlaneResources, explain_rows

    if not jobs:
        return []
    queries = {f"q{i}": j.query for i, j in enumerate(jobs)}
    items = {f"d{i}": j.text for i, j in enumerate(jobs)}
    rows = [{"qid": f"q{i}", "docid": f"d{i}"} for i in range(len(jobs))]
    results = explain_rows(explain_spec(spec, cfg), rows, queries, items, cfg, seed,
                           PlaneResources(cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor, 1),
                           desc=f"explain {spec.name}")
    out = []
    for job, res in zip(jobs, results):
        log.debug("explain %s: %s/%s %s in %.1fs", spec.name, job.qid, job.docid, res["status"], res.get("seconds", 0.0))
        out.append({**asdict(job), **res})
    return out
