"""The explain -> reason -> explanation-evaluate stages as cached pipeline artifacts.

`Pipeline.explain / reason / explanations` delegate here. Artifacts:
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
from bench.provenance import library_versions

log = logging.getLogger("bench")

VERSIONS = {"explain": 2, "reason": 1, "explanations": 1}
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


def explained_systems(p) -> list:
    """(spec, info) of the systems to explain; unknown names are an input error."""
    cfg = p.exp.explain
    specs = [(s, i) for s, i in p.system_specs() if i.status == "ok"]
    if cfg.systems is None:
        return specs
    known = {s.name for s, _ in specs} | {s.name for s in p.exp.rerank.systems}
    unknown = [n for n in cfg.systems if n not in known]
    if unknown:
        raise InputError(f"explain.systems: no re-rank system named {unknown[0]!r}; expected one of {sorted(known)}")
    return [(s, i) for s, i in specs if s.name in cfg.systems]


def preflight(p) -> None:
    """Checks that need no work: system names, the reason backend's key and extras."""
    if p.exp.explain is None:
        if p.exp.reason is not None:
            raise InputError("reason: needs the explain stage (add an 'explain:' section)")
        return
    if p.exp.explain.systems is not None:
        known = {s.name for s in p.exp.rerank.systems}
        unknown = [n for n in p.exp.explain.systems if n not in known]
        if unknown and p.exp.train is None:  # trained cells get their names later
            raise InputError(f"explain.systems: no re-rank system named {unknown[0]!r}; expected one of {sorted(known)}")
    r = p.exp.reason
    if r is not None and r.backend == "openai" and not r.base_url and not os.environ.get("OPENAI_BASE_URL") \
            and not os.environ.get(r.api_key_env):
        raise InputError(f"reason.api_key_env: environment variable {r.api_key_env} is not set; the openai backend "
                         f"needs a key for api.openai.com (or set reason.base_url to a local server)")
    if r is not None and r.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise InputError('reason.backend: vllm is not installed; pip install "rerank-bench[vllm]" on GPU nodes')


def explain_system(p, name: str, spec, info) -> tuple[list[dict], str]:
    from bench.explain.stage import ExplainJob

    cfg = p.exp.explain
    ds = p.dataset(name)
    sr = p.rerank(name, spec, info)
    qids = p.rerank_qids(name)[: cfg.max_queries] if cfg.max_queries else p.rerank_qids(name)
    seed = p.exp.seed if cfg.seed is None else cfg.seed
    key = content_hash("explain", VERSIONS["explain"], sr.key, ds.key, cfg.model_dump(exclude=EXPLAIN_RESOURCES),
                       seed, qids, library_versions("explain"))

    def build(tmp: Path) -> None:
        from bench.cluster import ensure_ray
        from bench.explain.stage import explain_jobs

        col = ds.collection
        jobs = []
        for qid in qids:
            for rank, (docid, score) in enumerate(sr.run.ranked(qid, cfg.top_items), start=1):
                doc = col.corpus[docid]
                jobs.append(ExplainJob(spec.name, name, qid, docid, rank, float(score), col.queries[qid],
                                       doc.full_text(), doc.url, doc.title))
        ensure_ray(p.exp.ray)
        _write_jsonl(tmp / "items.jsonl", explain_jobs(spec, cfg, jobs, seed))

    items = p.cache.get_or_build("explain", key, build, lambda d: _read_jsonl(d / "items.jsonl"),
                                 label=f"{spec.name} on {name}")
    return items, key


def reason_system(p, name: str, spec, info) -> tuple[list[dict], dict, str]:
    from bench.reason.stage import reason_items

    memo = p.__dict__.setdefault("_reason_memo", {})  # once per process, even if asked twice
    if (name, spec.name) in memo:
        return memo[(name, spec.name)]
    cfg = p.exp.reason
    items, explain_key = explain_system(p, name, spec, info)
    key = content_hash("reason", VERSIONS["reason"], explain_key, cfg.model_dump(exclude=REASON_TRANSPORT))
    path = p.cache.path("reason", key)
    if p.cache.is_done("reason", key):
        summary = json.loads((path / "summary.json").read_text())
        if summary.get("failed"):
            log.info("reason %s on %s: %s failed prompts last time; retrying them (the rest come from the "
                     "response cache)", spec.name, name, summary["failed"])
            shutil.rmtree(path)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else p.out_dir / "llm_cache"

    def build(tmp: Path) -> None:
        out, summary = reason_items(items, cfg, cache_dir)
        _write_jsonl(tmp / "items.jsonl", out)
        write_json_atomic(tmp / "summary.json", summary)

    def load(d: Path):
        return _read_jsonl(d / "items.jsonl"), json.loads((d / "summary.json").read_text())

    out, summary = p.cache.get_or_build("reason", key, build, load, label=f"{spec.name} on {name}")
    memo[(name, spec.name)] = (out, summary, key)
    return out, summary, key


def explain_all(p) -> tuple[list[dict], list[str]]:
    """KernelSHAP attributions of every explained system's top items, on every data source."""
    from bench.console import stage

    items, keys = [], []
    with stage("explain", "KernelSHAP attributions") as st:
        for ds in p.datasets():
            for spec, info in explained_systems(p):
                its, key = explain_system(p, ds.name, spec, info)
                items += its
                keys.append(key)
        st["note"] = f"{len(items)} items, {sum(it.get('status') in ('ok', 'k_clamped') for it in items)} explained"
    return items, keys


def reason_all(p) -> tuple[list[dict], list[str], dict]:
    """LLM explanations (with / without attributions) of every explained item; usage per system."""
    from bench.console import stage

    items, keys, usage = [], [], {}
    with stage("reason", f"{p.exp.reason.backend}:{p.exp.reason.model}") as st:
        for ds in p.datasets():
            for spec, info in explained_systems(p):
                its, summary, key = reason_system(p, ds.name, spec, info)
                usage[f"{spec.name} on {ds.name}"] = summary
                items += its
                keys.append(key)
        st["note"] = (f"{sum(u['prompts'] for u in usage.values())} prompts, "
                      f"{sum(u['ok'] for u in usage.values())} ok, {sum(u['cached'] for u in usage.values())} cached")
    return items, keys, usage


def evaluate_explanations(p, items: list[dict], keys: list[str]) -> dict:
    """Faithfulness, grounding, agreement and the Table 2 text columns (a cached artifact)."""
    from bench.console import stage
    from bench.evaluate.explanations import explanation_metrics, table2_text

    runs = {ds.name: {sr.info.name: sr.run for sr in p.system_runs(ds.name) if sr.run is not None} for ds in p.datasets()}
    run_keys = [sr.key for d in p.datasets() for sr in p.system_runs(d.name)]
    key = content_hash("explanations", VERSIONS["explanations"], keys, run_keys,
                       {d.name: p.rerank_qids(d.name) for d in p.datasets()})

    def build(tmp: Path) -> None:
        metrics = explanation_metrics(items)
        table2 = {}
        for ds in p.datasets():
            df = table2_text(ds.collection, runs[ds.name], p.rerank_qids(ds.name))
            table2[ds.name] = df.to_dict(orient="records")
        write_json_atomic(tmp / "metrics.json", {**metrics, "table2_text": table2})

    with stage("evaluate explanations", "faithfulness, grounding, text agreement"):
        return p.cache.get_or_build("explanations", key, build, lambda d: json.loads((d / "metrics.json").read_text()),
                                    label="faithfulness, grounding, text agreement")


def write_explanation_outputs(p, items: list[dict], metrics: dict, usage: dict) -> None:
    """The user-facing copies: per-item JSON, Fig. 4 bar charts, Table 3 examples, explanations.json."""
    from bench.report.examples import write_examples
    from bench.report.figures import attribution_bar_chart, item_slug

    out = p.out_dir
    for it in items:
        slug = item_slug(it)
        write_json_atomic(out / "explanations" / it["system"] / f"{slug}.json", it)
        attribution_bar_chart(it, out / "figures" / f"{slug}.png")
    write_examples(items, out / "table3.md", f"Explanations: {p.exp.name}")
    write_json_atomic(out / "explanations.json", {**metrics, "reason_usage": usage})


def explanation_columns(p, reason: bool = True) -> dict[str, dict[str, float]]:
    """explain -> (reason) -> evaluate -> outputs; returns the leaderboard's extra columns (system -> value)."""
    items, keys = explain_all(p)
    usage: dict = {}
    if reason and p.exp.reason is not None:
        items, keys, usage = reason_all(p)
    metrics = evaluate_explanations(p, items, keys)
    write_explanation_outputs(p, items, metrics, usage)
    return leaderboard_columns(metrics, p.exp.explain.k, p.exp.explain.ks)


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
    names = {"cosine": "top1 cosine", "bertscore_f1": "top1 BERTScore", "bleu": "top1 BLEU", "rougeL": "top1 ROUGE-L"}
    tables = metrics.get("table2_text", {})
    for ds_rows in tables.values() if len(tables) == 1 else []:  # one dataset: plain columns, like the paper
        for row in ds_rows:
            for m, col in names.items():
                if row.get(m) is not None:
                    cols.setdefault(col, {})[row["system"]] = row[m]
    return cols
