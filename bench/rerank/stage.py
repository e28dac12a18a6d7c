"""Rerank stage: every model-based system's ranking of every data source, scored in one pass of the data
plane (`bench.plane`: Ray Data actors, one model load per system per actor).

A job is (data source, system); its ranking holds the plane's scores of the first stage's top
`rerank.depth` candidates per query, and below them the rest of the first stage's list in its own order
(scores under every re-ranked one), so a re-ranked run is as deep as its first stage. Every job's
counts of pairs cut to fit (`bench.rerank.prompts`) and the compute dtype travel with its run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.collection import Collection, Run


@dataclass
class RerankJob:
    dataset: str
    spec: object  # ScorerSpec
    collection: Collection
    first_stage: Run
    qids: list[str]


def compute_identity(dtype: str, gpus_per_actor: float) -> dict:
    """Where and in which precision a system is scored: part of the rerank and explain keys (bf16 on a GPU
    and float32 on a CPU give different scores). `auto` on CUDA is bf16, or fp16 where bf16 is missing."""
    return {"device": "cuda" if gpus_per_actor else "cpu", "dtype": dtype}


def recorded_dtype(dtype: str, gpus_per_actor: float) -> str:
    if dtype != "auto":
        return dtype
    return "bfloat16 (fp16 without bf16)" if gpus_per_actor else "float32"


def score_jobs(jobs: list[RerankJob], cfg) -> list[tuple[Run, dict]]:
    """(run, cuts) per job, scored together on the data plane (`cfg`: the experiment's `rerank:`)."""
    from bench.plane import PlaneResources, score_rows

    specs = list(dict.fromkeys(job.spec for job in jobs))
    spec_index = {s: i for i, s in enumerate(specs)}
    rows, owners, queries, items = [], [], {}, {}
    for j, job in enumerate(jobs):
        for qid in job.qids:
            qkey = f"{job.dataset}\x00{qid}"
            queries[qkey] = job.collection.queries[qid]
            for docid, _ in job.first_stage.ranked(qid, cfg.depth):
                dkey = f"{job.dataset}\x00{docid}"
                items.setdefault(dkey, job.collection.corpus[docid].full_text())
                rows.append({"system": spec_index[job.spec], "qid": qkey, "docid": dkey})
                owners.append((j, qid, docid))
    order = sorted(range(len(rows)), key=lambda r: rows[r]["system"])  # consecutive rows share a model
    rows, owners = [rows[r] for r in order], [owners[r] for r in order]
    res = score_rows(specs, rows, queries, items,
                     PlaneResources(cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor, cfg.plane_batch_size),
                     desc="rerank")
    per_job: list[dict] = [{} for _ in jobs]
    cuts = [{"pairs": 0, "query_cut": 0, "item_cut": 0, "any_cut": 0} for _ in jobs]
    for (j, qid, docid), s, qc, ic in zip(owners, res["score"], res["query_cut"], res["item_cut"]):
        per_job[j].setdefault(qid, {})[docid] = float(s)
        c = cuts[j]
        c["pairs"] += 1
        c["query_cut"] += int(qc)
        c["item_cut"] += int(ic)
        c["any_cut"] += int(qc or ic)
    out = []
    for j, job in enumerate(jobs):
        reranked = per_job[j]
        for qid in job.qids:
            top = reranked.setdefault(qid, {})
            floor = min(top.values(), default=0.0)
            for i, (docid, _) in enumerate(job.first_stage.ranked(qid)[cfg.depth:]):
                top[docid] = floor - 1.0 - i  # below every re-ranked item, first-stage order kept
        if not np.isfinite([v for d in reranked.values() for v in d.values()]).all():
            raise RuntimeError(f"{job.spec.name} produced non-finite scores on {job.dataset}")
        cuts[j]["dtype"] = recorded_dtype(job.spec.dtype, cfg.gpus_per_actor)
        out.append((Run(job.spec.name, reranked), cuts[j]))
    return out
