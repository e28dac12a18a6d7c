"""Data loaders: every source in the config becomes the same `Collection`.

Declared once in `LOADERS` (loader name -> function), so the config schema, the CLI help and
the README table are generated from one place.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

from bench.config import (BeirSource, BrightSource, ClimateFeverSource, DemoSource, HFSource, IrDatasetsSource,
                          TrecDLSource)
from bench.data.collection import Collection, Document, Run
from bench.data.ids import safe_id
from bench.data.io import QrelsFile, id_field, read_json, read_jsonl, read_qrels, require_keys, text_field
from bench.errors import InputError, require_dir, require_file
from bench.registry import Registry, registry

DEMO_FILE = "envri_demo.jsonl"
SPLIT_NAMES = ("train", "valid", "test")

def _add_unique(mapping: dict, key: str, value, what: str, path: Path, lineno: int) -> None:
    if key in mapping:
        raise InputError(f"duplicate {what} id {key!r}", source=path, line=lineno)
    mapping[key] = value


def _limit(col: Collection, max_queries: int | None) -> Collection:
    if not max_queries:
        return col
    return col.subset(sorted(col.queries)[:max_queries])


def _grades_max(qrels: QrelsFile) -> int:
    return max(max(d.values()) for d in qrels.qrels.values())


# --------------------------------------------------------------------------------- demo
def demo_path() -> Path:
    return Path(str(resources.files("bench.data") / "demo" / DEMO_FILE))


def load_graded_lists(path: Path, name: str) -> Collection:
    """ENVRI-Hub layout: one line per query, each with 10 BM25-retrieved items graded 0-9.

    An optional `split` field per query (train / valid / test) is the dataset's own split, used
    by `splits: {scheme: dataset}`.
    """
    queries, corpus, qrels, splits = {}, {}, {}, {}
    for lineno, row in read_jsonl(path, "graded lists file"):
        require_keys(row, ("qid", "query", "items"), path, lineno)
        qid = safe_id(id_field(row, "qid", path, lineno))
        _add_unique(queries, qid, text_field(row, "query", path, lineno), "query", path, lineno)
        if row.get("split") is not None:
            if row["split"] not in SPLIT_NAMES:
                raise InputError(f"split {row['split']!r} is not one of {', '.join(SPLIT_NAMES)}", source=path,
                                 line=lineno)
            splits.setdefault(row["split"], []).append(qid)
        if not isinstance(row["items"], list):
            raise InputError("field 'items' must be a list of items", source=path, line=lineno)
        qrels[qid] = {}
        for item in row["items"]:
            if not isinstance(item, dict):
                raise InputError("every item must be an object with docid, summary and grade", source=path,
                                 line=lineno)
            require_keys(item, ("docid", "summary", "grade"), path, lineno)
            docid = safe_id(id_field(item, "docid", path, lineno))
            doc = Document(text_field(item, "summary", path, lineno, required=False),
                           text_field(item, "title", path, lineno, required=False),
                           text_field(item, "url", path, lineno, required=False))
            _add_unique(corpus, docid, doc, "document", path, lineno)
            grade = item["grade"]
            if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 9:
                raise InputError(f"grade {grade!r} of {docid!r} is not an integer 0-9", source=path, line=lineno)
            qrels[qid][docid] = grade
    if splits and set().union(*splits.values()) != set(queries):
        raise InputError("some queries have a 'split' and others do not: give every query one, or none",
                         source=path)
    col = Collection(name, queries, corpus, qrels, grades_max=9, splits={s: sorted(v) for s, v in splits.items()} or None,
                     meta={"synthetic": True, "layout": "envri-graded-lists"})
    return col.validate(str(path))


def load_demo(src: DemoSource) -> Collection:
    return _limit(load_graded_lists(demo_path(), src.name), src.max_queries)


# --------------------------------------------------------------------------------- BEIR
def read_beir_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for lineno, row in read_jsonl(path, "corpus file"):
        require_keys(row, ("_id", "text"), path, lineno)
        docid = safe_id(id_field(row, "_id", path, lineno))
        doc = Document(text_field(row, "text", path, lineno, required=False),
                       text_field(row, "title", path, lineno, required=False),
                       text_field(row, "url", path, lineno, required=False))
        _add_unique(corpus, docid, doc, "document", path, lineno)
    if not corpus:
        raise InputError("corpus is empty", source=path)
    return corpus


def read_beir_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, row in read_jsonl(path, "queries file"):
        require_keys(row, ("_id", "text"), path, lineno)
        qid = safe_id(id_field(row, "_id", path, lineno))
        _add_unique(queries, qid, text_field(row, "text", path, lineno), "query", path, lineno)
    if not queries:
        raise InputError("queries file is empty", source=path)
    return queries


def load_beir(src: BeirSource) -> Collection:
    root = require_dir(src.path, "BEIR folder", "path")
    corpus = read_beir_corpus(root / "corpus.jsonl")
    queries = read_beir_queries(root / "queries.jsonl")
    qrels = read_qrels(root / "qrels" / f"{src.split}.tsv", trec=False)
    qrels.check_ids(queries, corpus)
    # BEIR evaluates exactly the queries that have judgements in the split.
    queries = {q: t for q, t in queries.items() if q in qrels.qrels}
    col = Collection(src.name, queries, corpus, qrels.qrels, grades_max=_grades_max(qrels))
    return _limit(col.validate(str(root)), src.max_queries)


# --------------------------------------------------------------------------------- TREC DL
def load_trec_dl(src: TrecDLSource) -> Collection:
    """Candidate lists with passages (RankLLM/Pyserini JSON) + TREC qrels (+ optional run file)."""
    path = require_file(src.candidates, "candidates file", "candidates")
    data = read_json(path, "candidates file")
    if not isinstance(data, list):
        raise InputError("expected a JSON list of {query, hits}", source=path)
    queries, corpus, cands = {}, {}, {}
    for i, entry in enumerate(data):
        where = f"{path} (entry {i})"
        if not isinstance(entry, dict) or "query" not in entry or "hits" not in entry:
            raise InputError(f"entry {i} lacks 'query' or 'hits'", source=path)
        query = text_field(entry, "query", where, None)
        if not isinstance(entry["hits"], list):
            raise InputError(f"entry {i}: 'hits' must be a list", source=path)
        for hit in entry["hits"]:
            if not isinstance(hit, dict):
                raise InputError(f"entry {i}: every hit must be an object", source=path)
            for key in ("qid", "docid", "content"):
                if key not in hit:
                    raise InputError(f"entry {i}: hit lacks {key!r}", source=path)
            qid, docid = safe_id(id_field(hit, "qid", where, None)), safe_id(id_field(hit, "docid", where, None))
            if queries.get(qid, query) != query:
                raise InputError(f"entry {i}: query {qid!r} appears with two different texts", source=path)
            queries[qid] = query
            corpus.setdefault(docid, Document(text_field(hit, "content", where, None, required=False)))
            score = hit.get("score", -float(hit.get("rank", 0) or 0))
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise InputError(f"entry {i}: hit {docid!r} has a non-numeric score {score!r}", source=path)
            cands.setdefault(qid, {})[docid] = float(score)
    if not queries:
        raise InputError("no candidate lists", source=path)
    qrels = read_qrels(src.qrels)
    if src.run:
        first_stage = Run.load_trec(src.run, name="BM25")
        first_stage.check_ids(queries, corpus, what="run")  # blame the run file, with its line
    else:
        first_stage = Run("BM25", cands)
    # TREC DL qrels cover all 200+ topics of a year and judge passages outside the top-100 lists:
    # keep the judgements of the topics that have candidate lists.
    qrels_in = {q: d for q, d in qrels.qrels.items() if q in queries}
    if not qrels_in:
        raise InputError(f"no judged query has a candidate list in {path} (are these the qrels of another year?)",
                         source=src.qrels)
    col = Collection(src.name, queries, corpus, qrels_in, candidates=first_stage, grades_max=3,
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
        qid = f"cf{safe_id(id_field(row, 'claim_id', path, lineno))}"
        _add_unique(queries, qid, text_field(row, "claim", path, lineno), "claim", path, lineno)
        qrels[qid], own[qid] = {}, []
        if not isinstance(row["evidences"], list):
            raise InputError("field 'evidences' must be a list", source=path, line=lineno)
        for ev in row["evidences"]:
            if not isinstance(ev, dict):
                raise InputError("every evidence must be an object", source=path, line=lineno)
            require_keys(ev, ("evidence_id", "evidence"), path, lineno)
            docid = safe_id(id_field(ev, "evidence_id", path, lineno))
            corpus.setdefault(docid, Document(text_field(ev, "evidence", path, lineno, required=False),
                                              text_field(ev, "article", path, lineno, required=False)))
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
def _read_table(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, row) of a local BRIGHT table (jsonl / jsonl.gz / parquet)."""
    path = require_file(path, "BRIGHT file")
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a bad file
            raise InputError(f"cannot read parquet: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                             source=path) from None
        return list(enumerate(frame.to_dict("records"), start=1))
    return list(read_jsonl(path, "BRIGHT file"))


def load_bright(src: BrightSource) -> Collection:
    """BRIGHT examples + documents in the official schema; `excluded_ids` are never ranked."""
    if src.examples:
        examples = _read_table(src.examples)
    else:
        examples = list(enumerate(_hf_rows("xlangai/BRIGHT", "examples", src.domain), start=1))
    doc_config = "long_documents" if src.long_documents else "documents"
    if src.documents:
        documents = _read_table(src.documents)
    else:
        documents = list(enumerate(_hf_rows("xlangai/BRIGHT", doc_config, src.domain), start=1))
    where = str(src.documents or f"xlangai/BRIGHT:{doc_config}/{src.domain}")
    corpus: dict[str, Document] = {}
    for i, row in documents:
        if "id" not in row or "content" not in row:
            raise InputError("BRIGHT document lacks 'id' or 'content'", source=where, line=i)
        docid = safe_id(id_field(row, "id", where, i))
        _add_unique(corpus, docid, Document(text_field(row, "content", where, i, required=False)), "document",
                    Path(where), i)
    if not corpus:
        raise InputError("BRIGHT documents are empty", source=where)
    queries, qrels, excluded = {}, {}, {}
    gold_key = "gold_ids_long" if src.long_documents else "gold_ids"
    ex_where = str(src.examples or f"xlangai/BRIGHT:examples/{src.domain}")
    gold_lines: dict[tuple[str, str], int] = {}
    for i, row in examples:
        if "id" not in row or "query" not in row:
            raise InputError("BRIGHT example lacks 'id' or 'query'", source=ex_where, line=i)
        qid = safe_id(id_field(row, "id", ex_where, i))
        _add_unique(queries, qid, text_field(row, "query", ex_where, i), "query", Path(ex_where), i)
        excluded[qid] = [safe_id(d) for d in (row.get("excluded_ids") or []) if d != "N/A"]
        qrels[qid] = {safe_id(d): 1 for d in (row.get(gold_key) or [])}
        gold_lines.update({(qid, d): i for d in qrels[qid]})
    if src.qrels:
        qfile = read_qrels(src.qrels)
        qrels = {q: d for q, d in qfile.qrels.items() if q in queries}
        for (qid, docid), lineno in qfile.lines.items():
            if qid in queries and docid not in corpus:
                raise InputError(f"qrels for query {qid!r} name unknown document {docid!r}", source=src.qrels,
                                 line=lineno)
    else:
        QrelsFile(Path(ex_where), qrels, gold_lines).check_ids(queries, corpus)
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
    corpus = {safe_id(r["_id"]): Document(r["text"], r.get("title", "")) for r in _hf_rows(src.repo, "corpus", "corpus")}
    queries = {safe_id(r["_id"]): r["text"] for r in _hf_rows(src.repo, "queries", "queries")}
    qrels: dict[str, dict[str, int]] = {}
    for r in _hf_rows(src.qrels_repo or f"{src.repo}-qrels", "default", src.split):
        qrels.setdefault(safe_id(r["query-id"]), {})[safe_id(r["corpus-id"])] = int(r["score"])
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
# Every loader, the harness's and those another package registers (entry point group `rerank_bench.data_loaders`:
# a function from its `PluginSource` - `{loader: plugin, plugin: <name>, options: {...}}` - to a `Collection`).
DATA_LOADERS: Registry = registry("data_loaders")
for _name, _fn in LOADERS.items():
    DATA_LOADERS.register(_name, _fn, replace=True)


def load_source(src) -> Collection:
    if src.loader == "plugin":
        col = DATA_LOADERS.lookup(src.plugin)(src)
        if not isinstance(col, Collection):
            raise InputError(f"data loader {src.plugin!r} returned {type(col).__name__}, not a Collection")
        return _limit(col.validate(src.name), src.max_queries)
    return LOADERS[src.loader](src)
