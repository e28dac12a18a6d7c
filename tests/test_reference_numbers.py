"""Published reference numbers reproduced on real data (../shared/data)."""
from __future__ import annotations

import pytest

from bench.config import BeirSource, RetrieveConfig, TrecDLSource
from bench.data.collection import Run
from bench.data.loaders import load_beir, load_trec_dl
from bench.evaluate.ir import aggregate, per_query
from bench.retrieve.bm25 import bm25_run


def test_bm25_on_scifact_matches_pyserini_flat_within_0005(shared_data):
    col = load_beir(BeirSource(name="scifact", loader="beir", path=shared_data / "beir" / "scifact"))
    assert len(col.queries) == 300 and len(col.corpus) == 5183
    run = bm25_run(col, RetrieveConfig(depth=100), show_progress=False)
    ndcg = aggregate(per_query(run, col.qrels, ["nDCG@10"], "scifact")).iloc[0]["nDCG@10"]
    assert abs(ndcg - 0.6789) <= 0.005, ndcg


def test_shipped_dl19_bm25_run_evaluates_to_05058(shared_data):
    dl = shared_data / "trec-dl"
    col = load_trec_dl(TrecDLSource(name="dl19", loader="trec-dl", candidates=dl / "bm25-top100-dl19.json",
                                    qrels=dl / "qrels.dl19-passage.txt"))
    run = Run.load_trec(dl / "bm25-top100-dl19.trec")
    ndcg = aggregate(per_query(run, col.qrels, ["nDCG@10"], "dl19")).iloc[0]["nDCG@10"]
    assert round(ndcg, 4) == 0.5058
    # The JSON candidate lists carry the same run.
    from_json = aggregate(per_query(col.candidates, col.qrels, ["nDCG@10"], "dl19")).iloc[0]["nDCG@10"]
    assert from_json == pytest.approx(ndcg, abs=1e-4)
