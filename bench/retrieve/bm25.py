"""BM25 with bm25s (Lucene variant by default), the first stage of every experiment.

Defaults k1=0.9, b=0.4 with the English Snowball stemmer and bm25s' English stopwords: the
Pyserini/Anserini defaults. On BEIR SciFact (title + text) this gives nDCG@10 within 0.005 of
Pyserini's published flat-index 0.6789 (see tests/test_retrieve.py).
"""
from __future__ import annotations

from typing import Sequence

import bm25s
import numpy as np

from bench.config import RetrieveConfig
from bench.data.collection import Collection, Run


def _stemmer(language: str | None):
    if not language:
        return None
    import Stemmer

    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        from bench.errors import InputError

        raise InputError(f"retrieve.stemmer: unknown PyStemmer language {language!r}; "
                         f"expected one of {', '.join(Stemmer.algorithms())}") from None


class BM25Index:
    """A bm25s index over a list of texts; `search` returns (indices, scores) per query."""

    def __init__(self, texts: Sequence[str], cfg: RetrieveConfig = RetrieveConfig(), show_progress: bool = False):
        self.cfg = cfg
        self.stemmer = _stemmer(cfg.stemmer)
        self.show_progress = show_progress
        tokens = bm25s.tokenize(list(texts), stopwords=cfg.stopwords, stemmer=self.stemmer,
                                show_progress=show_progress)
        self.retriever = bm25s.BM25(method=cfg.variant, k1=cfg.k1, b=cfg.b)
        self.retriever.index(tokens, show_progress=show_progress)
        self.size = len(texts)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.size)
        tokens = bm25s.tokenize(list(queries), stopwords=self.cfg.stopwords, stemmer=self.stemmer,
                                show_progress=False)
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=self.show_progress)
        return docs, scores


def bm25_run(collection: Collection, cfg: RetrieveConfig, name: str = "BM25", show_progress: bool = False) -> Run:
    """Retrieve `cfg.depth` documents per query from the whole corpus."""
    docids = list(collection.corpus)
    texts = [collection.corpus[d].full_text() if cfg.title_field else collection.corpus[d].text for d in docids]
    index = BM25Index(texts, cfg, show_progress=show_progress)
    qids = list(collection.queries)
    extra = max((len(v) for v in collection.excluded.values()), default=0)
    idx, scores = index.search([collection.queries[q] for q in qids], k=cfg.depth + extra)
    run: dict[str, dict[str, float]] = {}
    for row, qid in enumerate(qids):
        excluded = set(collection.excluded.get(qid, ()))
        ranked = {}
        for j, s in zip(idx[row], scores[row]):
            d = docids[int(j)]
            if d not in excluded and s > 0:
                ranked[d] = float(s)
            if len(ranked) == cfg.depth:
                break
        run[qid] = ranked
    return Run(name, run)
