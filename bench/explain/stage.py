"""Explain stage: every configured explainer's attributions of re-ranked items, on the data plane
(`bench.plane`).

Each plane actor loads a system's scorer once (with the explain batch size: perturbed pairs are
scored in large padded batches) and runs every configured explainer on whole items
(`bench.explain.item.explain_one`), and RankingSHAP on whole queries when `ranking_shap` is listed
(`bench.explain.item.explain_query_ranking`). All systems' missing items go through one pass of the
plane, sorted by system, so process start-up and imports are paid once per run. Every item gets the
same seed, so its attributions do not depend on which actor explained it, nor on a retry after a
worker died.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

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


@dataclass
class RankingJob:
    """One query's top re-ranked candidates, whose ranking RankingSHAP explains."""

    system: str
    dataset: str
    qid: str
    query: str
    docids: list[str]
    texts: list[str] = field(default_factory=list)


def explain_spec(spec: ScorerSpec, cfg: ExplainConfig) -> ScorerSpec:
    """The scorer as the explain stage runs it: large padded batches of perturbed pairs."""
    return spec.model_copy(update={"batch_size": cfg.batch_size})


def explain_all_jobs(specs: list[ScorerSpec], cfg: ExplainConfig, jobs: list[list[ExplainJob]],
                     rankings: list[list[RankingJob]], seed: int,
                     desc: str = "explain") -> tuple[list[list[dict]], list[list[dict]]]:
    """Explain every job of every system (`jobs[i]`, `rankings[i]`: system `specs[i]`) in one pass of the
    plane; results come back per system in job order."""
    from bench.plane import RANKING_ROW, PlaneResources, explain_rows

    queries, items, rows, where = {}, {}, [], []
    for s, (system_jobs, system_rankings) in enumerate(zip(jobs, rankings)):
        for j, job in enumerate(system_jobs):
            q, d = f"q{len(rows)}", f"d{len(rows)}"
            queries[q], items[d] = job.query, job.text
            rows.append({"system": s, "qid": q, "docid": d})
            where.append(("item", s, j))
        for j, rk in enumerate(system_rankings):
            q = f"q{len(rows)}"
            queries[q] = rk.query
            ids = []
            for t, text in enumerate(rk.texts):
                ids.append(f"r{len(rows)}_{t}")
                items[ids[-1]] = text
            rows.append({"system": s, "qid": q, "docid": RANKING_ROW + "|".join(ids)})
            where.append(("ranking", s, j))
    out_items = [[None] * len(j) for j in jobs]
    out_rankings = [[None] * len(r) for r in rankings]
    if not rows:
        return out_items, out_rankings
    results = explain_rows([explain_spec(s, cfg) for s in specs], rows, queries, items, cfg, seed,
                           PlaneResources(cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor, 1), desc=desc)
    for (kind, s, j), res in zip(where, results):
        if kind == "item":
            job = jobs[s][j]
            log.debug("explain %s: %s/%s %s in %.1fs", job.system, job.qid, job.docid, res.get("status"),
                      res.get("seconds", 0.0))
            out_items[s][j] = {**asdict(job), **res}
        else:
            rk = rankings[s][j]
            out_rankings[s][j] = {**res, "system": rk.system, "dataset": rk.dataset, "qid": rk.qid,
                                  "docids": rk.docids}
    return out_items, out_rankings


def explain_jobs(spec: ScorerSpec, cfg: ExplainConfig, jobs: list[ExplainJob], seed: int) -> list[dict]:
    """Explain one system's jobs on the data plane; results come back in job order."""
    items, _ = explain_all_jobs([spec], cfg, [jobs], [[]], seed, desc=f"explain {spec.name}")
    return items[0]
