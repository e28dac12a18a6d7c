"""The explain, reason and explanation-metrics nodes: the systems explained, every configured explainer's
attributions (one pass of the data plane), LLM reasons, and the metrics and outputs of the explanations."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.console import stage
from bench.provenance import stamp


def explained_systems(p) -> list:
    from bench.explain.steps import selected_systems

    return selected_systems(p.system_specs(), p.exp.explain, [s.name for s in p.exp.rerank.systems])


def explain_qids(p, name: str) -> list[str]:
    cfg = p.exp.explain
    return p.rerank_qids(name)[: cfg.max_queries] if cfg.max_queries else p.rerank_qids(name)


def explain_all(p) -> dict:
    """(dataset, system) -> ExplainArtifact of every explained system on every data source it ranks: every
    configured explainer's attributions of its top items (and RankingSHAP of its rankings, when listed); the
    missing ones are computed in one pass of the data plane (all systems: start-up paid once)."""
    from bench.explain.steps import explain_all

    cfg = p.exp.explain
    ranked = p.rerank_all()
    pairs = [(d.name, spec) for d in p.datasets() for spec, _ in p.explained_systems()
             if (d.name, spec.name) in ranked]
    arts = explain_all(p.cache, [(ranked[(n, spec.name)], p.dataset(n).collection, p.explain_qids(n), spec)
                                    for n, spec in pairs], cfg, p.exp.seed if cfg.seed is None else cfg.seed,
                       p.exp.ray)
    return {(n, spec.name): a for (n, spec), a in zip(pairs, arts)}


def explain(p, name: str, system: str):
    """One system's attributions on one data source (ExplainArtifact)."""
    return p.explain_all()[(name, system)]


def reason(p, name: str, system: str):
    """LLM explanations with and without attributions, with usage and cost (ReasonArtifact)."""
    from bench.explain.steps import reason_stage

    cfg = p.exp.reason
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else p.out_dir / "llm_cache"
    return reason_stage(p.cache, p.explain(name, system), cfg, cache_dir, f"{system} on {name}")


def explanations(p, reason: bool = True) -> dict[str, dict[str, float]]:
    """explain -> (reason) -> explanation metrics -> outputs; the leaderboard's extra columns (the columns
    with intervals are kept in `p.explain_intervals`)."""
    from bench.explain.steps import leaderboard_columns, metrics_stage, write_explanation_outputs

    cfg = p.exp.explain
    labels = ", ".join(e.key for e in cfg.explainers)
    with stage("explain", f"{labels} attributions") as st:
        explained_by_pair = p.explain_all()
        pairs = list(explained_by_pair)
        explained = list(explained_by_pair.values())
        items = [it for a in explained for it in a.items]
        rankings = [r for a in explained for r in a.rankings]
        st["note"] = (f"{len(items)} items, {sum(it.get('status') in ('ok', 'k_clamped') for it in items)} "
                      f"explained" + (f"; {len(rankings)} rankings" if rankings else ""))
    keys, usage = [a.key for a in explained], {}
    if reason and p.exp.reason is not None:
        with stage("reason", f"{p.exp.reason.backend}:{p.exp.reason.model}") as st:
            reasoned = {(n, s): p.reason(n, s) for n, s in pairs}
            items = [it for a in reasoned.values() for it in a.items]
            keys = [a.key for a in reasoned.values()]
            usage = {f"{s} on {n}": a.summary for (n, s), a in reasoned.items()}
            st["note"] = (f"{sum(u['prompts'] for u in usage.values())} prompts, "
                          f"{sum(u['ok'] for u in usage.values())} ok, "
                          f"{sum(u['cached'] for u in usage.values())} cached")
    runs = {d.name: {sr.info.name: sr.run for sr in p.system_runs(d.name) if sr.run is not None}
            for d in p.datasets()}
    keys += [sr.key for d in p.datasets() for sr in p.system_runs(d.name)]
    rep = p.exp.report
    settings = {"k": cfg.k, "ks": list(cfg.ks), "seed": p.exp.seed, "test": rep.test,
                "n_resamples": rep.bootstrap_resamples or 1000}
    with stage("evaluate explanations", "faithfulness with intervals over queries, grounding, text agreement"):
        metrics = metrics_stage(p.cache, items, keys, runs, {d.name: d.collection for d in p.datasets()},
                                {d.name: p.rerank_qids(d.name) for d in p.datasets()}, rankings, settings,
                                cfg)
    write_explanation_outputs(p.out_dir, items, metrics, usage, f"Explanations: {p.exp.name}", rankings)
    p.explain_intervals = metrics.get("intervals", {})
    if any(info.kind in ("trained", "tuned") for _, info in p.explained_systems()):
        from bench.report.explainability import write_explainability

        per_query = pd.concat([p.evaluate(d.name) for d in p.datasets()], ignore_index=True)
        prov = stamp(p.exp.hash(), p.exp.seed, {d.name: d.checksum for d in p.datasets()})
        write_explainability(items, per_query, p.all_systems(), p.exp, p.out_dir, prov)
    return leaderboard_columns(metrics, cfg.k, cfg.ks)


