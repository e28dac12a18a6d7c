"""The rerank stage's nodes: every model-based system's ranking of every data source it ranks (one pass of the
data plane for the missing ones), run-file systems, listwise LLM re-rankers; and the systems of an experiment."""
from __future__ import annotations

import logging
from pathlib import Path

from bench.artifacts import content_fingerprint, content_hash, missing_file, read_json_or_empty, write_json_atomic
from bench.config import ScorerSpec
from bench.console import stage
from bench.data.collection import Run
from bench.provenance import library_versions
from bench.systems import SystemInfo, SystemRun

log = logging.getLogger("bench")


def scorer_identity(spec: ScorerSpec) -> dict:
    """What decides a scorer's scores: the spec without labels; the adapter by its weights."""
    from bench.models import model_fingerprint

    ident = spec.model_dump(mode="json", exclude={"name", "params", "adapter", "datasets"})
    ident["model"] = model_fingerprint(spec.model)
    ident["adapter"] = adapter_fingerprint(spec)
    return ident


def adapter_fingerprint(spec: ScorerSpec) -> str | None:
    """A trained adapter's identity is its files' hash, so a retrained cell is re-scored."""
    if not spec.adapter:
        return None
    return content_fingerprint(Path(spec.adapter))


def listwise_method(lw) -> str:
    """A listwise system's method label: RankGPT's plain prompt, or R2R's reasoning prompt (R2R Table 5)."""
    return "rankgpt-reasoning" if getattr(lw, "prompt", "rankgpt") == "reasoning" else "rankgpt"


def system_specs(p) -> list[tuple[ScorerSpec, SystemInfo]]:
    """Every model-based system of the experiment: configured ones, then trained cells, then tuned."""
    from bench.models import PRESETS

    specs = []
    for spec in p.exp.rerank.scorers:
        preset = PRESETS.get(spec.model)
        params = spec.params or (preset.params if preset else "")
        specs.append((spec, SystemInfo(spec.name, kind="zero-shot", params=params,
                                       family=preset.family if preset else spec.kind)))
    from bench.train.grid import trained_system

    specs.extend(trained_system(r, p.exp.train) for r in p.train_results())
    if p.exp.tune is not None:  # the sweep's best trial (selected on valid), once a sweep has run
        from bench.tune.best import tuned_systems

        specs.extend(tuned_systems(p))
    return specs


def rerank_qids(p, name: str) -> list[str]:
    return p.dataset(name).qids(p.exp.evaluate.split)


def rerank_key(p, name: str, spec: ScorerSpec) -> str:
    from bench.rerank.stage import compute_identity

    return content_hash("rerank", p.code("rerank"), p.first_stage(name).key, scorer_identity(spec),
                        compute_identity(spec.dtype, p.exp.rerank.gpus_per_actor), p.exp.rerank.depth,
                        p.rerank_qids(name), library_versions("rerank"))


def rerank_all(p) -> dict[tuple[str, str], SystemRun]:
    """Every (model-based system, dataset) ranking. Missing ones are scored in one pass of the data
    plane (all systems, all datasets: start-up paid once), then written as cached artifacts."""
    specs = [(s, i) for s, i in p.system_specs() if i.status == "ok"]  # trains the grid first, if any
    jobs = [(ds.name, spec, info) for ds in p.datasets() for spec, info in specs
            if spec.datasets is None or ds.name in spec.datasets]
    if not jobs:
        return {}
    todo = [(n, s, i) for n, s, i in jobs if not p.cache.is_done("rerank", p.rerank_key(n, s))]
    if todo:
        with stage("rerank", f"{len(todo)} system x dataset rankings") as st:
            scored = score_with_plane(p, todo)
            for (n, spec, _), (run, cuts) in zip(todo, scored):
                write_rerank(p, n, spec, run, cuts)
            st["note"] = f"{sum(c['pairs'] for _, c in scored)} pairs"
    out = {}
    cut_systems = []
    for n, spec, info in jobs:
        key = p.rerank_key(n, spec)
        path = p.cache.path("rerank", key)
        run = p.cache.get_or_build("rerank", key, missing_file, lambda d: Run.load_trec(d / "run.trec", spec.name),
                                   label=f"{spec.name} on {n}")
        cuts = read_json_or_empty(path / "cuts.json")
        if cuts.get("any_cut"):
            cut_systems.append(f"{spec.name} on {n}: {cuts['any_cut']}/{cuts['pairs']}")
            log.debug("rerank %s on %s: %d of %d pairs cut to max_length %d (query %d, item %d)", spec.name, n,
                      cuts["any_cut"], cuts["pairs"], spec.max_length, cuts["query_cut"], cuts["item_cut"])
        out[(n, spec.name)] = SystemRun(info, n, run, key, cuts)
    if cut_systems:  # the counts per system are in leaderboard.json ("truncation") and the log file
        log.info("rerank: pairs cut to fit max_length (item first, then query) in %d of %d rankings, e.g. %s",
                 len(cut_systems), len(jobs), "; ".join(cut_systems[:2]))
    return out


def score_with_plane(p, todo: list) -> list[tuple[Run, dict]]:
    from bench.cluster import ensure_ray
    from bench.rerank.stage import RerankJob, score_jobs

    ensure_ray(p.exp.ray)
    return score_jobs([RerankJob(name, spec, p.dataset(name).collection, p.first_stage(name).run,
                                 p.rerank_qids(name)) for name, spec, _ in todo], p.exp.rerank)


def write_rerank(p, name: str, spec: ScorerSpec, run: Run, cuts: dict) -> None:
    def build(tmp: Path) -> None:
        run.save_trec(tmp / "run.trec")
        write_json_atomic(tmp / "cuts.json", {**cuts, "max_length": spec.max_length})

    p.cache.get_or_build("rerank", p.rerank_key(name, spec), build,
                         lambda d: Run.load_trec(d / "run.trec", spec.name), label=f"{spec.name} on {name}")


def rerank(p, name: str, spec: ScorerSpec, info: SystemInfo) -> SystemRun:
    """One system's ranking of one dataset (computed with all others that are missing)."""
    runs = p.rerank_all()
    if (name, spec.name) in runs:
        return runs[(name, spec.name)]
    raise KeyError(f"no ranking of {name} by {spec.name}")


def run_file_systems(p, name: str) -> list[SystemRun]:
    """Systems given as TREC run files (`kind: run`), checked against the collection."""
    ds = p.dataset(name)
    out = []
    for rs in p.exp.rerank.run_systems:
        if rs.dataset not in (None, name):
            continue
        run = Run.load_trec(rs.run, rs.name)
        run.check_ids(ds.collection.queries, ds.collection.corpus, what=f"run of system {rs.name!r}")
        run.name = rs.name
        key = content_hash("run-file", content_fingerprint(rs.run), rs.name)
        out.append(SystemRun(SystemInfo(rs.name, kind="run", params=rs.params or ""), name, run, key))
    return out


def listwise_runs(p, name: str) -> list[SystemRun]:
    """Listwise LLM re-rankers (RankGPT's sliding window) of one data source: cached artifacts with the
    run and the per-query counts (calls, tokens, cost, latency, malformed / repeated / missing ids)."""
    from bench.reason.backends import ResponseCache, cost_usd, endpoint_identity
    from bench.rerank.listwise import rerank_listwise

    ds, first = p.dataset(name), p.first_stage(name)
    qids = p.rerank_qids(name)
    out = []
    for lw in p.exp.rerank.listwise_systems:
        if lw.datasets is not None and name not in lw.datasets:
            continue
        transport = {"name", "params", "datasets", *lw.TRANSPORT}
        key = content_hash("listwise", p.code("listwise"), first.key, lw.model_dump(exclude=transport),
                           endpoint_identity(lw), qids)

        def build(tmp: Path, lw=lw) -> None:
            col = ds.collection
            docs = {d for q in qids for d, _ in first.run.ranked(q, lw.depth)}
            run, stats = rerank_listwise(lw, lw.reason_config(), col.queries,
                                         {d: col.corpus[d].full_text() for d in docs}, first.run, qids,
                                         ResponseCache(p.out_dir / "llm_cache"))
            per_query = {q: vars(st) for q, st in stats.items()}
            totals = {k: sum(st[k] for st in per_query.values()) for k in
                      ("calls", "prompt_tokens", "completion_tokens", "seconds", "cached", "malformed", "repeated",
                       "missing", "out_of_range", "failed", "parse_errors", "answer_prompt_tokens",
                       "answer_completion_tokens", "ids", "unranked")}
            totals["cost_usd"] = cost_usd(lw.reason_config(), totals["prompt_tokens"], totals["completion_tokens"])
            totals["queries"] = len(qids)
            totals["decoding"] = lw.decoding()  # provenance: the settings that decided the answers
            run.save_trec(tmp / "run.trec")
            write_json_atomic(tmp / "listwise.json", {"totals": totals, "per_query": per_query})

        with stage("rerank listwise", f"{lw.name} on {name}") as st:
            run = p.cache.get_or_build("rerank", key, build, lambda d, lw=lw: Run.load_trec(d / "run.trec", lw.name),
                                       label=f"{lw.name} on {name}")
            counts = read_json_or_empty(p.cache.path("rerank", key) / "listwise.json")
            t = counts.get("totals", {})
            st["note"] = (f"{t.get('calls', 0)} calls ({t.get('cached', 0)} cached), "
                          f"malformed {t.get('malformed', 0)}, repeated {t.get('repeated', 0)}, "
                          f"missing {t.get('missing', 0)}")
        info = SystemInfo(lw.name, kind="listwise", params=lw.params or "", method=listwise_method(lw))
        out.append(SystemRun(info, name, run, key, {"listwise": counts}))
    return out


def system_runs(p, name: str) -> list[SystemRun]:
    runs = [p.first_stage(name), *p.run_file_systems(name), *p.listwise_runs(name)]
    reranked = p.rerank_all()
    runs += [sr for (n, _), sr in reranked.items() if n == name]
    return runs


def all_systems(p) -> dict[str, SystemInfo]:
    systems = {p.first_stage(d.name).info.name: p.first_stage(d.name).info for d in p.datasets()}
    for rs in p.exp.rerank.run_systems:
        systems[rs.name] = SystemInfo(rs.name, kind="run", params=rs.params or "")
    for lw in p.exp.rerank.listwise_systems:
        systems[lw.name] = SystemInfo(lw.name, kind="listwise", params=lw.params or "", method=listwise_method(lw))
    systems.update({info.name: info for _, info in p.system_specs()})
    return systems


