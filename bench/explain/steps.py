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
from bench.errors import InputError
from bench.explain.artifacts import ExplainArtifact, ReasonArtifact
from bench.provenance import library_versions
from bench.systems import SystemRun

log = logging.getLogger("bench")

# The modules that compute each artifact (their code is part of its key: `bench.codehash`).
STAGE_CODE = {"explain": ("bench.explain.stage", "bench.plane"), "reason": ("bench.reason.stage",),
              "explanations": ("bench.evaluate.explanations",)}


def stage_code(stage: str) -> str:
    from bench.codehash import code_fingerprint

    return code_fingerprint(*STAGE_CODE[stage])
# Settings that change how fast, not what: left out of artifact keys.
EXPLAIN_RESOURCES = {"actors", "cpus_per_actor", "gpus_per_actor"}
REASON_TRANSPORT = {"base_url", "api_key_env", "concurrency", "max_retries", "timeout_s", "backoff_s", "batch_size",
                    "actors", "gpus_per_actor", "prices", "cache_dir"}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def selected_systems(specs: list, cfg, configured: list[str]) -> list:
    """(spec, info) of the systems to explain; an unknown name is an input error."""
    specs = [(s, i) for s, i in specs if i.status == "ok"]
    if cfg.systems is None:
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
    if exp.explain.systems is not None:
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


def explain_stage(cache, ranking: SystemRun, collection, qids: list[str], spec, cfg, seed: int,
                  ray_cfg) -> ExplainArtifact:
    """KernelSHAP attributions of a system's top `cfg.top_items` items per query (ranking -> attributions)."""
    from bench.explain.stage import ExplainJob

    from bench.rerank.stage import compute_identity

    key = content_hash("explain", stage_code("explain"), ranking.key, cfg.model_dump(exclude=EXPLAIN_RESOURCES),
                       compute_identity(spec.dtype, cfg.gpus_per_actor), seed,
                       qids, library_versions("explain"))

    def build(tmp: Path) -> None:
        from bench.cluster import ensure_ray
        from bench.explain.stage import explain_jobs

        jobs = []
        for qid in qids:
            for rank, (docid, score) in enumerate(ranking.run.ranked(qid, cfg.top_items), start=1):
                doc = collection.corpus[docid]
                jobs.append(ExplainJob(spec.name, ranking.dataset, qid, docid, rank, float(score),
                                       collection.queries[qid], doc.full_text(), doc.url, doc.title))
        ensure_ray(ray_cfg)
        _write_jsonl(tmp / "items.jsonl", explain_jobs(spec, cfg, jobs, seed))

    items = cache.get_or_build("explain", key, build, lambda d: _read_jsonl(d / "items.jsonl"),
                               label=f"{spec.name} on {ranking.dataset}")
    return ExplainArtifact(key, items)


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
        _write_jsonl(tmp / "items.jsonl", out)
        write_json_atomic(tmp / "summary.json", summary)

    def load(d: Path):
        return _read_jsonl(d / "items.jsonl"), json.loads((d / "summary.json").read_text())

    items, summary = cache.get_or_build("reason", key, build, load, label=label)
    return ReasonArtifact(key, items, summary)


def metrics_stage(cache, items: list, keys: list[str], runs: dict, collections: dict, qids: dict) -> dict:
    """Faithfulness, grounding, agreement and the Table 2 text columns of explained items (a cached
    artifact). `runs`: dataset -> system -> Run (with their keys in `keys`), `qids`: dataset -> queries."""
    from bench.evaluate.explanations import explanation_metrics, table2_text

    key = content_hash("explanations", stage_code("explanations"), keys, qids)

    def build(tmp: Path) -> None:
        metrics = explanation_metrics(items)
        table2 = {name: table2_text(collections[name], runs[name], qids[name]).to_dict(orient="records")
                  for name in runs}
        write_json_atomic(tmp / "metrics.json", {**metrics, "table2_text": table2})

    return cache.get_or_build("explanations", key, build, lambda d: json.loads((d / "metrics.json").read_text()),
                              label="faithfulness, grounding, text agreement")


def write_explanation_outputs(out: Path, items: list, metrics: dict, usage: dict, title: str) -> None:
    """The user-facing copies: per-item JSON, Fig. 4 bar charts, Table 3 examples, explanations.json."""
    from bench.report.examples import write_examples
    from bench.report.figures import attribution_bar_chart, item_slug

    for it in items:
        slug = item_slug(it)
        write_json_atomic(out / "explanations" / it["system"] / f"{slug}.json", it)
        attribution_bar_chart(it, out / "figures" / f"{slug}.png")
    write_examples(items, out / "table3.md", title)
    write_json_atomic(out / "explanations.json", {**metrics, "reason_usage": usage})


def leaderboard_columns(metrics: dict, k: int, ks: list[int]) -> dict[str, dict[str, float]]:
    cols: dict[str, dict[str, float]] = {}
    k_faith = k if k in ks else max(ks, default=k)
    for row in metrics.get("faithfulness", []):
        if row["k"] == k_faith:
            cols.setdefault(f"comp@{k_faith}", {})[row["system"]] = row["comprehensiveness"]
            cols.setdefault(f"suff@{k_faith}", {})[row["system"]] = row["sufficiency"]
    for system, row in metrics.get("systems", {}).items():
        if "aopc_comprehensiveness" in row:
            cols.setdefault("AOPC comp", {})[system] = row["aopc_comprehensiveness"]
            cols.setdefault("AOPC suff", {})[system] = row["aopc_sufficiency"]
        if row.get("grounding_with") is not None:
            cols.setdefault(f"grounding@{k}", {})[system] = row["grounding_with"]
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
