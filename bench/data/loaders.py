"""Data loaders: every source in the config becomes the same `Collection`.

Declared once in `LOADERS` (loader name -> function), so the config schema, the CLI help and
the README table are generated from one place.
"""
from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Callable

from bench.config import (BeirSource, BrightSource, ClimateFeverSource, DemoSource, HFSource, IrDatasetsSource,
                          TrecDLSource)
from bench.data.collection import Collection, Document, Run
from bench.data.io import read_jsonl, read_qrels, require_keys
from bench.errors import InputError, require_dir, require_file

DEMO_FILE = "envri_demo.jsonl"


def _safe_id(raw: str) -> str:
    """Ids go into whitespace-separated TREC files: replace whitespace by '_'."""
    return re.sub(r"\s+", "_", str(raw).strip())


def _add_unique(mapping: dict, key: str, value, what: str, path: Path, lineno: int) -> None:
    if key in mapping:
        raise InputError(f"duplicate {what} id {key!r}", source=path, line=lineno)
    mapping[key] = value


def _limit(col: Collection, max_queries: int | None) -> Collection:
    if not max_queries:
        return col
    return col.subset(sorted(col.queries)[:max_queries])


# --------------------------------------------------------------------------------- demo
def demo_path() -> Path:
    return Path(str(resources.files("bench.data") / "demo" / DEMO_FILE))


def load_graded_lists(path: Path, name: str) -> Collection:
    """ENVRI-Hub layout: one line per query, each with 10 BM25-retrieved items graded 0-9."""
    queries, corpus, qrels = {}, {}, {}
    for lineno, row in read_jsonl(path, "graded lists file"):
        require_keys(row, ("qid", "query", "items"), path, lineno)
        qid = _safe_id(row["qid"])
        _add_unique(queries, qid, row["query"], "query", path, lineno)
        qrels[qid] = {}
        for item in row["items"]:
            require_keys(item, ("docid", "summary", "grade"), path, lineno)
            docid = _safe_id(item["docid"])
            _add_unique(corpus, docid, Document(item["summary"], item.get("title", ""), item.get("url", "")),
                        "document", path, lineno)
            if not isinstance(item["grade"], int) or not 0 <= item["grade"] <= 9:
                raise InputError(f"grade {item['grade']!r} of {docid!r} is not an integer 0-9", source=path,
                                 line=lineno)
            qrels[qid][docid] = item["grade"]
    return Collection(name, queries, corpus, qrels, grades_max=9,
                      meta={"synthetic": True, "layout": "envri-graded-lists"}).validate(str(path))


def load_demo(src: DemoSource) -> Collection:
    return _limit(load_graded_lists(demo_path(), src.name), src.max_queries)


# --------------------------------------------------------------------------------- BEIR
def read_beir_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for lineno, row in read_jsonl(path, "corpus file"):
        require_keys(row, ("_id", "text"), path, lineno)
        _add_unique(corpus, _safe_id(row["_id"]), Document(row["text"] or "", row.get("title") or "",
                                                           row.get("url") or ""), "document", path, lineno)
    if not corpus:
        raise InputError("corpus is empty", source=path)
    return corpus


def read_beir_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, row in read_jsonl(path, "queries file"):
        require_keys(row, ("_id", "text"), path, lineno)
        _add_unique(queries, _safe_id(row["_id"]), row["text"], "query", path, lineno)
    if not queries:
        raise InputError("queries file is empty", source=path)
    return queries


def load_beir(src: BeirSource) -> Collection:
    root = require_dir(src.path, "BEIR folder", "path")
    corpus = read_beir_corpus(root / "corpus.jsonl")
    queries = read_beir_queries(root / "queries.jsonl")
    qrels = read_qrels(root / "qrels" / f"{src.split}.tsv", trec=False)
    # BEIR evaluates exactly the queries that have judgements in the split.
    queries = {q: t for q, t in queries.items() if q in qrels}
    col = Collection(src.name, queries, corpus, qrels, grades_max=max(max(d.values()) for d in qrels.values()))
    return _limit(col.validate(str(root)), src.max_queries)


# --------------------------------------------------------------------------------- TREC DL
def load_trec_dl(src: TrecDLSource) -> Collection:
    """Candidate lists with passages (RankLLM/Pyserini JSON) + TREC qrels (+ optional run file)."""
    path = require_file(src.candidates, "candidates file", "candidates")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"bad JSON ({e.msg} at line {e.lineno})", source=path) from None
    if not isinstance(data, list):
        raise InputError("expected a JSON list of {query, hits}", source=path)
    queries, corpus, cands = {}, {}, {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "query" not in entry or "hits" not in entry:
            raise InputError(f"entry {i} lacks 'query' or 'hits'", source=path)
        for hit in entry["hits"]:
            for key in ("qid", "docid", "content"):
                if key not in hit:
                    raise InputError(f"entry {i}: hit lacks {key!r}", source=path)
            qid, docid = _safe_id(hit["qid"]), _safe_id(hit["docid"])
            queries[qid] = entry["query"]
            corpus.setdefault(docid, Document(hit["content"]))
            cands.setdefault(qid, {})[docid] = float(hit.get("score", -hit.get("rank", 0)))
    qrels = read_qrels(src.qrels)
    first_stage = Run.load_trec(src.run, name="BM25") if src.run else Run("BM25", cands)
    qrels = {q: d for q, d in qrels.items() if q in queries}
    col = Collection(src.name, queries, corpus, qrels, candidates=first_stage, grades_max=3,
                     meta={"partial_corpus": True})
    return _limit(col.validate(str(path)), src.max_queries)


# --------------------------------------------------------------------------------- Climate-FEVER
def climate_fever_grade(evidence: dict) -> int:
    """Grade one evidence sentence for its claim from the annotators' votes.

    1 + the number of annotators who found it decisive (SUPPORTS or REFUTES), so evidence that
    every annotator judged NOT_ENOUGH_INFO gets 1 (on topic, not decisive) and BM25 negatives
    from other claims get 0. Scale 0-6.
    """
    votes = [v for v in evidence.get("votes", []) if v]
    decisive = sum(v in ("SUPPORTS", "REFUTES") for v in votes)
    if not votes:  # no per-annotator votes: fall back on the aggregated label
        decisive = 2 if evidence.get("evidence_label") in ("SUPPORTS", "REFUTES") else 0
    return 1 + decisive


def load_climate_fever(src: ClimateFeverSource) -> Collection:
    from bench.config import RetrieveConfig
    from bench.retrieve.bm25 import BM25Index

    path = require_file(src.path, "Climate-FEVER file", "path")
    queries, corpus, qrels, own = {}, {}, {}, {}
    for lineno, row in read_jsonl(path, "Climate-FEVER file"):
        require_keys(row, ("claim_id", "claim", "evidences"), path, lineno)
        qid = f"cf{_safe_id(row['claim_id'])}"
        _add_unique(queries, qid, row["claim"], "claim", path, lineno)
        qrels[qid], own[qid] = {}, []
        for ev in row["evidences"]:
            require_keys(ev, ("evidence_id", "evidence"), path, lineno)
            docid = _safe_id(ev["evidence_id"])
            corpus.setdefault(docid, Document(ev["evidence"], ev.get("article", "")))
            qrels[qid][docid] = climate_fever_grade(ev)
            own[qid].append(docid)
    if not corpus:
        raise InputError("no evidence sentences", source=path)
    if src.max_queries:
        keep = sorted(queries)[: src.max_queries]
        queries = {q: queries[q] for q in keep}
    # Pad every claim's list to `list_size` with BM25 negatives drawn from the whole evidence pool.
    docids = list(corpus)
    index = BM25Index([corpus[d].full_text() for d in docids], RetrieveConfig())
    qids = list(queries)
    idx, scores = index.search([queries[q] for q in qids], k=src.list_size + 10)
    cands = {}
    for row, qid in enumerate(qids):
        found = {docids[int(j)]: float(s) for j, s in zip(idx[row], scores[row])}
        negatives = [d for d in found if d not in qrels[qid]][: max(0, src.list_size - len(own[qid]))]
        for d in negatives:
            qrels[qid][d] = 0
        cands[qid] = {d: found.get(d, 0.0) for d in own[qid][: src.list_size] + negatives}
    qrels = {q: qrels[q] for q in qids}
    col = Collection(src.name, queries, corpus, qrels, candidates=Run("BM25", cands), grades_max=6,
                     meta={"grading": "1 + decisive annotator votes; 0 for BM25 negatives"})
    return col.validate(str(path))


# --------------------------------------------------------------------------------- BRIGHT
def _read_table(path: Path) -> list[dict]:
    path = require_file(path, "BRIGHT file")
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    return [row for _, row in read_jsonl(path, "BRIGHT file")]


def load_bright(src: BrightSource) -> Collection:
    """BRIGHT examples + documents in the official schema; `excluded_ids` are never ranked."""
    if src.examples:
        examples = _read_table(src.examples)
    else:
        examples = _hf_rows("xlangai/BRIGHT", "examples", src.domain)
    doc_config = "long_documents" if src.long_documents else "documents"
    if src.documents:
        documents = _read_table(src.documents)
    else:
        documents = _hf_rows("xlangai/BRIGHT", doc_config, src.domain)
    where = str(src.documents or f"xlangai/BRIGHT:{doc_config}/{src.domain}")
    corpus: dict[str, Document] = {}
    for i, row in enumerate(documents, start=1):
        if "id" not in row or "content" not in row:
            raise InputError("BRIGHT document lacks 'id' or 'content'", source=where, line=i)
        _add_unique(corpus, _safe_id(row["id"]), Document(row["content"]), "document", Path(where), i)
    if not corpus:
        raise InputError("BRIGHT documents are empty", source=where)
    queries, qrels, excluded = {}, {}, {}
    gold_key = "gold_ids_long" if src.long_documents else "gold_ids"
    for i, row in enumerate(examples, start=1):
        if "id" not in row or "query" not in row:
            raise InputError("BRIGHT example lacks 'id' or 'query'", source=str(src.examples or "examples"), line=i)
        qid = _safe_id(row["id"])
        queries[qid] = row["query"]
        excluded[qid] = [_safe_id(d) for d in (row.get("excluded_ids") or []) if d != "N/A"]
        qrels[qid] = {_safe_id(d): 1 for d in (row.get(gold_key) or [])}
    if src.qrels:
        qrels = {q: d for q, d in read_qrels(src.qrels).items() if q in queries}
    col = Collection(src.name, queries, corpus, qrels, excluded=excluded, grades_max=1)
    return _limit(col.validate(where), src.max_queries)


def _hf_rows(repo: str, config: str, split: str) -> list[dict]:
    """Rows of a Hugging Face dataset (online use; the hub is unreachable on offline machines)."""
    try:
        import datasets
    except ImportError:
        raise InputError('Hugging Face datasets need: pip install "rerank-bench"') from None
    try:
        return list(datasets.load_dataset(repo, config, split=split))
    except Exception as e:  # noqa: BLE001 - hub errors are many; report them in one line
        raise InputError(f"cannot load Hugging Face dataset {repo} ({config}/{split}): {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None


# --------------------------------------------------------------------------------- online sources
def load_ir_datasets(src: IrDatasetsSource) -> Collection:
    """Any ir_datasets id with docs, queries and qrels (downloads on first use; online only)."""
    try:
        import ir_datasets
    except ImportError:
        raise InputError('the ir_datasets loader needs: pip install "rerank-bench[online]"') from None
    try:
        ds = ir_datasets.load(src.dataset_id)
    except KeyError:
        raise InputError(f"data.{src.name}.dataset_id: unknown ir_datasets id {src.dataset_id!r}") from None
    corpus = {d.doc_id: Document(getattr(d, "text", "") or "", getattr(d, "title", "") or "") for d in ds.docs_iter()}
    queries = {q.query_id: q.text for q in ds.queries_iter()}
    qrels: dict[str, dict[str, int]] = {}
    for r in ds.qrels_iter():
        qrels.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
    queries = {q: t for q, t in queries.items() if q in qrels}
    col = Collection(src.name, queries, corpus, qrels, grades_max=max(max(d.values()) for d in qrels.values()))
    return _limit(col.validate(src.dataset_id), src.max_queries)


def load_hf(src: HFSource) -> Collection:
    """A BEIR-layout dataset on the Hugging Face hub (e.g. BeIR/scifact + BeIR/scifact-qrels)."""
    corpus = {_safe_id(r["_id"]): Document(r["text"], r.get("title", "")) for r in _hf_rows(src.repo, "corpus", "corpus")}
    queries = {_safe_id(r["_id"]): r["text"] for r in _hf_rows(src.repo, "queries", "queries")}
    qrels: dict[str, dict[str, int]] = {}
    for r in _hf_rows(src.qrels_repo or f"{src.repo}-qrels", "default", src.split):
        qrels.setdefault(_safe_id(r["query-id"]), {})[_safe_id(r["corpus-id"])] = int(r["score"])
    queries = {q: t for q, t in queries.items() if q in qrels}
    col = Collection(src.name, queries, corpus, qrels, grades_max=max(max(d.values()) for d in qrels.values()))
    return _limit(col.validate(src.repo), src.max_queries)


LOADERS: dict[str, Callable] = {
    "demo": load_demo,
    "beir": load_beir,
    "trec-dl": load_trec_dl,
    "climate-fever": load_climate_fever,
    "bright": load_bright,
    "ir_datasets": load_ir_datasets,
    "hf": load_hf,
}


def load_source(src) -> Collection:
    return LOADERS[src.loader](src)
