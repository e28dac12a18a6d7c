"""The explain -> reason -> explanation-evaluate stages: functions from typed input artifacts to typed
output artifacts (`bench.explain.artifacts`), each cached; `Pipeline.explanations` wires them. Artifacts:
- `explain/<key>/items.jsonl`: per item tokens, words, values, top-k, erasure scores;
- `reason/<key>/items.jsonl` + `summary.json`: the items with both explanations, usage, cost;
- `explanations/<key>/metrics.json`: faithfulness, AOPC, grounding, agreement, Table 2 text columns.
User-facing copies: `results/<exp>/explanations/<system>/<item>.json` (everything about an item),
`figures/<item>.png` (Fig. 4), `table3.md` (Tables 3-4 examples), `explanations.json` (metrics).

The reason artifact is only reused when every prompt succeeded; otherwise the stage re-runs and
the response cache answers every prompt that already succeeded, so failed ones are retried and
nothing is paid for twice.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from bench.artifacts import content_hash, write_json_atomic
from bench.data.io import write_jsonl
from bench.errors import InputError
from bench.explain.artifacts import ExplainArtifact, ReasonArtifact
from bench.provenance import library_versions
from bench.systems import SystemRun

log = logging.getLogger("bench")

# The modules that compute each artifact (their code is part of its key: `bench.codehash`).
STAGE_CODE = {"explain": ("bench.explain.stage", "bench.plane", "bench.explain.item", "bench.explain.explainers",
                          "bench.explain.explainers.api", "bench.explain.explainers.pair",
                          "bench.explain.explainers.perturbation", "bench.explain.explainers.gradients",
                          "bench.explain.explainers.ranking", "bench.explain.explainers.registry",
                          "bench.evaluate.faithfulness"), "reason": ("bench.reason.stage",),
              "explanations": ("bench.evaluate.explanations", "bench.evaluate.faithfulness",
                               "bench.explain.summary", "bench.explain.ground_truth")}


def stage_code(stage: str) -> str:
    from bench.codehash import code_fingerprint

    return code_fingerprint(*STAGE_CODE[stage])
# Settings that change how fast, not what: left out of artifact keys.
EXPLAIN_RESOURCES = {"actors", "cpus_per_actor", "gpus_per_actor"}
# ... and settings that decide which systems are explained or what the metrics stage adds, not one system's items
EXPLAIN_NOT_ITEMS = EXPLAIN_RESOURCES | {"systems", "ground_truth"}
REASON_TRANSPORT = {"base_url", "api_key_env", "concurrency", "max_retries", "timeout_s", "backoff_s", "batch_size",
                    "actors", "gpus_per_actor", "prices", "cache_dir"}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def selected_systems(specs: list, cfg, configured: list[str]) -> list:
    """(spec, info) of the systems to explain; an unknown name is an input error."""
    specs = [(s, i) for s, i in specs if i.status == "ok"]
    if cfg.systems in (None, "all"):  # every model-based system: configured, trained cells, the tuned trial
        return specs
    known = {s.name for s, _ in specs} | set(configured)
    unknown = [n for n in cfg.systems if n not in known]
    if unknown:
        raise InputError(f"explain.systems: no re-rank system named {unknown[0]!r}; expected one of {sorted(known)}")
    return [(s, i) for s, i in specs if s.name in cfg.systems]


def preflight(exp) -> None:
    """Checks that need no work: system names, the reason backend's key and extras."""
    if exp.explain is None:
        if exp.reason is not None:
            raise InputError("reason: needs the explain stage (add an 'explain:' section)")
        return
    if exp.explain.unit != "word":
        raise InputError("explain.unit: the explain stage attributes words (query and item words, sub-word pieces "
                         "merged, the same for every explainer); expected 'word', got 'token'")
    if isinstance(exp.explain.systems, list):
        known = {s.name for s in exp.rerank.scorers}
        unknown = [n for n in exp.explain.systems if n not in known]
        if unknown and exp.train is None:  # trained cells get their names later
            raise InputError(f"explain.systems: no re-rank system named {unknown[0]!r}; expected one of {sorted(known)}")
    r = exp.reason
    if r is not None and r.backend == "openai" and not r.base_url and not os.environ.get("OPENAI_BASE_URL") \
            and not os.environ.get(r.api_key_env):
        raise InputError(f"reason.api_key_env: environment variable {r.api_key_env} is not set; the openai backend "
                         f"needs a key for api.openai.com (or set reason.base_url to a local server)")
    if r is not None and r.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise InputError('reason.backend: vllm is not installed; pip install "rerank-bench[vllm]" on GPU nodes')


def explain_key(ranking: SystemRun, spec, cfg, seed: int, qids: list[str]) -> str:
    """What decides one system's explanations of one data source: its ranking, the explain slice (every
    explainer and its parameters, the metrics' settings), the device and dtype, the seed, the queries, the
    code (the explainer library included: `STAGE_CODE`) and the libraries' versions."""
    from bench.rerank.stage import compute_identity

    return content_hash("explain", stage_code("explain"), ranking.key, cfg.model_dump(exclude=EXPLAIN_NOT_ITEMS),
                        compute_identity(spec.dtype, cfg.gpus_per_actor), seed, qids, library_versions("explain"))


def _jobs(ranking: SystemRun, collection, qids: list[str], spec, cfg) -> tuple[list, list]:
    """The system's top `cfg.top_items` items of every query, and (with ranking_shap) each query's ranking of
    its top candidates."""
    from bench.explain.stage import ExplainJob, RankingJob

    jobs, rankings = [], []
    rcfg = cfg.ranking_config()
    for qid in qids:
        for rank, (docid, score) in enumerate(ranking.run.ranked(qid, cfg.top_items), start=1):
            doc = collection.corpus[docid]
            jobs.append(ExplainJob(spec.name, ranking.dataset, qid, docid, rank, float(score),
                                   collection.queries[qid], doc.full_text(), doc.url, doc.title))
        if rcfg is not None:
            top = [d for d, _ in ranking.run.ranked(qid, rcfg.candidates)]
            if len(top) >= 2:
                rankings.append(RankingJob(spec.name, ranking.dataset, qid, collection.queries[qid], top,
                                           [collection.corpus[d].full_text() for d in top]))
    return jobs, rankings


def explain_all(cache, requests: list, cfg, seed: int, ray_cfg) -> list[ExplainArtifact]:
    """Explanations of every (ranking, collection, qids, spec) request: the missing ones computed in ONE pass
    of the data plane (all systems: start-up paid once), each then written as its own cached artifact
    (`items.jsonl`, `rankings.jsonl`)."""
    keys = [explain_key(r, spec, cfg, seed, qids) for r, _, qids, spec in requests]
    todo = [i for i, key in enumerate(keys) if not cache.is_done("explain", key)]
    built: dict[int, tuple[list, list]] = {}
    if todo:
        from bench.cluster import ensure_ray
        from bench.explain.stage import explain_all_jobs

        jobs = [_jobs(*requests[i], cfg) for i in todo]
        ensure_ray(ray_cfg)
        items, rankings = explain_all_jobs([requests[i][3] for i in todo], cfg, [j for j, _ in jobs],
                                           [r for _, r in jobs], seed)
        built = {i: (it, rk) for i, it, rk in zip(todo, items, rankings)}

    def load(d: Path) -> tuple[list, list]:
        ranked = d / "rankings.jsonl"
        return _read_jsonl(d / "items.jsonl"), (_read_jsonl(ranked) if ranked.is_file() else [])

    out = []
    for i, (key, (ranking, _, _, spec)) in enumerate(zip(keys, requests)):
        def build(tmp: Path, i=i) -> None:
            if i not in built:  # finished by another run meanwhile: nothing of ours to write
                raise RuntimeError("explain: artifact vanished while the stage ran")
            write_jsonl(tmp / "items.jsonl", built[i][0])
            write_jsonl(tmp / "rankings.jsonl", built[i][1])

        items, rankings = cache.get_or_build("explain", key, build, load, label=f"{spec.name} on {ranking.dataset}")
        out.append(ExplainArtifact(key, items, rankings))
    return out


def explain_stage(cache, ranking: SystemRun, collection, qids: list[str], spec, cfg, seed: int,
                  ray_cfg) -> ExplainArtifact:
    """One system's explanations of one data source (ranking -> attributions by every explainer)."""
    return explain_all(cache, [(ranking, collection, qids, spec)], cfg, seed, ray_cfg)[0]


def reason_stage(cache, explained: ExplainArtifact, cfg, cache_dir: Path, label: str) -> ReasonArtifact:
    """LLM explanations of explained items, with and without their attributions (+ usage and cost).

    The artifact is reused only when every prompt succeeded; otherwise the stage runs again and
    the response cache answers every prompt that already succeeded."""
    from bench.reason.stage import reason_items

    from bench.reason.backends import endpoint_identity

    key = content_hash("reason", stage_code("reason"), explained.key, cfg.model_dump(exclude=REASON_TRANSPORT),
                       endpoint_identity(cfg))
    path = cache.path("reason", key)
    if cache.is_done("reason", key):
        summary = json.loads((path / "summary.json").read_text())
        if summary.get("failed"):
            log.info("reason %s: %s failed prompts last time; retrying them (the rest come from the response "
                     "cache)", label, summary["failed"])
            shutil.rmtree(path)

    def build(tmp: Path) -> None:
        out, summary = reason_items(explained.items, cfg, cache_dir)
        write_jsonl(tmp / "items.jsonl", out)
        write_json_atomic(tmp / "summary.json", summary)

    def load(d: Path):
        return _read_jsonl(d / "items.jsonl"), json.loads((d / "summary.json").read_text())

    items, summary = cache.get_or_build("reason", key, build, load, label=label)
    return ReasonArtifact(key, items, summary)


def metrics_stage(cache, items: list, keys: list[str], runs: dict, collections: dict, qids: dict,
                  rankings: list | None = None, settings: dict | None = None, explain_cfg=None) -> dict:
    """Faithfulness, grounding, agreement and the Table 2 text columns of explained items (a cached
    artifact). `runs`: dataset -> system -> Run (with their keys in `keys`), `qids`: dataset -> queries.
    `settings` {k, ks, seed, test, n_resamples}: the explainer comparison with intervals over queries
    (`bench.explain.summary`): per system `explainers`, across systems `system_comparisons`, and the
    leaderboard's `intervals` columns. With `explain_cfg.ground_truth`, every pairwise explainer (its parameters
    as configured) is also run on the analytic test scorer: `ground_truth` holds each one's largest absolute
    error against the exact values (`bench.explain.ground_truth.reference_errors`)."""
    from bench.evaluate.explanations import explanation_metrics, table2_text
    from bench.explain.summary import interval_columns, system_comparisons, system_summary

    settings = settings or {"k": 10, "ks": [], "seed": 0, "test": "t-test", "n_resamples": 1000}
    rankings = rankings or []
    truth = explain_cfg is not None and explain_cfg.ground_truth
    key = content_hash("explanations", stage_code("explanations"), keys, qids, settings,
                       explain_cfg.model_dump(exclude=EXPLAIN_RESOURCES) if truth else None)

    def build(tmp: Path) -> None:
        metrics = explanation_metrics(items)
        table2 = {name: table2_text(collections[name], runs[name], qids[name]).to_dict(orient="records")
                  for name in runs}
        by_system: dict[str, list] = {}
        for it in items:
            by_system.setdefault(it["system"], []).append(it)
        summaries = {system: system_summary(mine, [r for r in rankings if r.get("system") == system],
                                            settings["ks"], settings["seed"], settings["test"],
                                            settings["n_resamples"]) for system, mine in by_system.items()}
        write_json_atomic(tmp / "metrics.json", {
            **metrics, "table2_text": table2, "explainers": summaries,
            "system_comparisons": system_comparisons(by_system, settings["seed"], settings["test"]),
            "intervals": interval_columns(summaries, settings["k"], settings["ks"]),
            "intervals_note": "mean of per-query means; 95 % percentile bootstrap interval resampling queries "
                              f"({settings['n_resamples']} resamples, seed {settings['seed']})",
            **({"ground_truth": ground_truth_errors(explain_cfg, settings["seed"])} if truth else {})})

    return cache.get_or_build("explanations", key, build, lambda d: json.loads((d / "metrics.json").read_text()),
                              label="faithfulness, grounding, text agreement")


def ground_truth_errors(cfg, seed: int) -> dict:
    """Each pairwise explainer's largest absolute error on the analytic test scorer (both reference cases: additive,
    one interaction) against its exact target (Shapley values; leave-one-out drops for `loo`), with the explain
    slice's parameters and removal rule (no metrics, no stability rerun)."""
    from dataclasses import replace

    from bench.explain.ground_truth import reference_errors

    detail = reference_errors(cfg.explainer_specs(), replace(cfg.pair_settings(), metrics=False,
                                                             repeat_seed_offset=None), seed)
    out = {}
    for name, cases in detail.items():
        errors = [c["max_abs_error"] for c in cases.values() if c["max_abs_error"] is not None]
        out[name] = {"max_abs_error": max(errors) if errors else None, "target": next(iter(cases.values()))["target"],
                     "cases": cases}
    return out


def write_explanation_outputs(out: Path, items: list, metrics: dict, usage: dict, title: str,
                              rankings: list | None = None) -> None:
    """The user-facing copies: per-item JSON (every explainer's values, cost and metrics), per-query RankingSHAP
    JSON, Fig. 4 bar charts, Table 3 examples, explanations.json (all metrics) and explainers.md (the explainer
    comparison per system, with intervals)."""
    from bench.artifacts import write_text_atomic
    from bench.report.examples import write_examples
    from bench.explain.summary import benchmark_summary
    from bench.report.explainers import explainers_markdown
    from bench.report.figures import attribution_bar_chart, item_slug

    for it in items:
        slug = item_slug(it)
        write_json_atomic(out / "explanations" / it["system"] / f"{slug}.json", it)
        attribution_bar_chart(it, out / "figures" / f"{slug}.png")
    for r in rankings or []:
        slug = item_slug({**r, "docid": "ranking"})
        write_json_atomic(out / "explanations" / r["system"] / f"{slug}.json", r)
    write_examples(items, out / "table3.md", title)
    write_json_atomic(out / "explanations.json", {**metrics, "reason_usage": usage})
    write_text_atomic(out / "explainers.md", explainers_markdown(metrics, title))
    write_json_atomic(out / "summary.json", benchmark_summary(metrics, title))


def leaderboard_columns(metrics: dict, k: int, ks: list[int]) -> dict[str, dict[str, float]]:
    """The leaderboard's plain extra columns: the paper's Table 2 text columns (corpus-level scores). The
    faithfulness and grounding columns carry intervals: `metrics["intervals"]` (`interval_columns`)."""
    cols: dict[str, dict[str, float]] = {}
    tables = metrics.get("table2_text", {})
    for dataset, ds_rows in tables.items():  # every dataset keeps its columns (one dataset: plain names, like the paper)
        for row in ds_rows:
            for m, (col, scale) in TABLE2_TEXT_COLUMNS.items():
                if row.get(m) is not None:
                    name = col if len(tables) == 1 else f"{dataset} {col}"
                    cols.setdefault(name, {})[row["system"]] = row[m] * scale
    return cols


# The paper's Table 2 text columns: metric key -> (leaderboard header with the metric's scale, factor to that
# scale). sacrebleu reports BLEU on 0-100; the paper's Table 2 uses 0-1, so the column is BLEU / 100.
TABLE2_TEXT_COLUMNS = {"cosine": ("top1 cosine [-1,1]", 1.0), "bertscore_f1": ("top1 BERTScore F1 [0,1]", 1.0),
                       "bleu": ("top1 BLEU [0,1]", 0.01), "rougeL": ("top1 ROUGE-L F [0,1]", 1.0)}
