"""The R2R teacher's node: an LLM's lists (and reasons) for a data source's training and reference queries, the
training data of the R2R students."""
from __future__ import annotations

import json
from pathlib import Path

from bench.artifacts import content_hash, missing_file, read_json_or_empty, write_json_atomic
from bench.console import stage
from bench.data.io import write_jsonl


def teacher(p, name: str) -> dict:
    """The R2R teacher's lists of a data source: its training queries (the first `r2r.max_queries`) and
    `r2r.reference_queries` test queries (Table 3's references). A cached artifact."""
    from bench.r2r.teacher import as_records, teach
    from bench.reason.backends import ResponseCache, endpoint_identity

    cfg = p.exp.r2r
    ds, first = p.dataset(name), p.first_stage(name)
    train = ds.splits.get("train", [])[: cfg.max_queries] if cfg.max_queries else ds.splits.get("train", [])
    reference = ds.splits.get("test", [])[: cfg.reference_queries]
    key = content_hash("teacher", p.code("teacher"), first.key,
                       cfg.teacher.model_dump(exclude=set(cfg.teacher.TRANSPORT)), endpoint_identity(cfg.teacher),
                       train, reference)

    def build(tmp: Path) -> None:
        col = ds.collection
        qids = list(dict.fromkeys(train + reference))
        docs = {d for q in qids for d, _ in first.run.ranked(q, cfg.teacher.depth)}
        lists, summary = teach(cfg.teacher, col.queries, {d: col.corpus[d].full_text() for d in docs}, first.run,
                               qids, ResponseCache(p.out_dir / "llm_cache"))
        write_jsonl(tmp / "lists.jsonl", as_records(lists))
        write_json_atomic(tmp / "summary.json", {**summary, "train": train, "reference": reference})

    with stage("teacher", f"R2R {cfg.teacher.backend}:{cfg.teacher.model} on {name}") as st:
        path = p.cache.get_or_build("teacher", key, build, lambda d: d, label=name,
                                    validate=lambda d: read_json_or_empty(d / "summary.json") or missing_file(d))
        summary = read_json_or_empty(path / "summary.json")
        st["note"] = (f"{summary['queries']} queries, {summary['reasons_ok']}/{summary['reason_prompts']} reasons, "
                      f"{summary['fallbacks']} rankings fell back to the first stage")
    lists = [json.loads(line) for line in (path / "lists.jsonl").read_text().splitlines() if line]
    return {"lists": lists, "summary": summary, "train": train, "reference": reference}


def teacher_data(p, name: str) -> dict:
    """The R2R students' training data: teacher lists of the training queries, their texts, and the
    teacher's direct reasons on the reference test queries."""
    t = p.teacher(name)
    col = p.dataset(name).collection
    train = set(t["train"])
    lists = [tl for tl in t["lists"] if tl["qid"] in train]
    docs = {d for tl in t["lists"] for d in tl["docids"]}
    reference = [{"qid": tl["qid"], "docid": d, "query": tl["query"], "text": col.corpus[d].full_text(),
                  "teacher": text} for tl in t["lists"] if tl["qid"] in set(t["reference"])
                 for d, text in tl["direct"].items()]
    return {"r2r_lists": lists, "r2r_texts": {d: col.corpus[d].full_text() for d in docs},
            "r2r_reference": reference}


