"""Loaders, splits and the paper's training data, on the demo set and real collections."""
from __future__ import annotations

import json

from bench.config import BrightSource, ClimateFeverSource, DemoSource, SplitConfig
from bench.data.collection import Run
from bench.data.loaders import load_bright, load_climate_fever, load_demo
from bench.data.pairs import pointwise_items, preference_pairs
from bench.data.splits import split_queries


def test_demo_set_has_envri_layout_30_plus_queries_of_10_graded_items():
    col = load_demo(DemoSource(name="demo", loader="demo"))
    assert len(col.queries) >= 30
    for qid, judged in col.qrels.items():
        assert len(judged) == 10
        assert all(0 <= g <= 9 for g in judged.values())
        for docid in judged:
            doc = col.corpus[docid]
            assert doc.url.startswith("https://") and doc.text.count(".") >= 4
    assert col.meta["synthetic"] is True


def test_seeded_split_is_80_10_10_and_reproducible():
    col = load_demo(DemoSource(name="demo", loader="demo"))
    a = split_queries(col, SplitConfig(), seed=7)
    b = split_queries(col, SplitConfig(), seed=7)
    c = split_queries(col, SplitConfig(), seed=8)
    assert a == b and a != c
    n = len(col.queries)
    assert len(a["train"]) == round(0.8 * n) and len(a["test"]) >= 1 and len(a["valid"]) >= 1
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(col.queries)


def test_pairs_are_top5_x_bottom5_graded_items_25_per_query():
    col = load_demo(DemoSource(name="demo", loader="demo"))
    # First stage = the graded lists themselves, so each query offers exactly its 10 items.
    lists = Run("lists", {q: {d: float(-i) for i, d in enumerate(docs)} for q, docs in col.qrels.items()})
    qid = sorted(col.queries)[0]
    pairs = preference_pairs(col, lists, [qid], depth=10)
    grades = sorted(col.qrels[qid].values(), reverse=True)
    expected = sum(1 for c in grades[:5] for r in grades[5:] if c > r)
    assert len(pairs) == expected and expected <= 25
    assert all(p.chosen_grade > p.rejected_grade for p in pairs)
    items = pointwise_items(col, lists, [qid], depth=10)
    assert len(items) == 10 and {i.relevant for i in items} <= {True, False}


def test_climate_fever_claims_become_graded_lists_of_10_padded_with_bm25_negatives(shared_data):
    col = load_climate_fever(ClimateFeverSource(name="cf", loader="climate-fever",
                                                path=shared_data / "climate-fever" / "climate-fever.jsonl",
                                                max_queries=40))
    assert len(col.queries) == 40
    for qid, cands in col.candidates.scores.items():
        assert len(cands) == 10
        grades = [col.qrels[qid][d] for d in cands]
        assert grades.count(0) == 5  # 5 annotated evidences + 5 BM25 negatives
        assert all(g >= 1 for g in grades if g) and max(grades) <= 6


def test_bright_documents_in_official_schema_and_excluded_ids_never_ranked(tmp_path, shared_data, write_config, cli):
    import gzip

    examples = [json.loads(l) for l in gzip.open(shared_data / "bright" / "topics.bright-biology-original.jsonl.gz",
                                                   "rt")][:3]
    docs = {d for ex in examples for d in ex["gold_ids"]}
    excluded = "biology_distractor_0.txt"
    examples[0]["excluded_ids"] = [excluded]
    ex_path = tmp_path / "examples.jsonl"
    ex_path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    doc_path = tmp_path / "documents.jsonl"
    rows = [{"id": d, "content": examples[0]["query"] if d == excluded else f"passage {d}"} for d in
            sorted(docs | {excluded})]
    doc_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    col = load_bright(BrightSource(name="bright-biology", loader="bright", domain="biology", examples=ex_path,
                                   documents=doc_path))
    assert set(col.queries) == {e["id"] for e in examples}
    assert col.excluded[examples[0]["id"]] == [excluded]
    cfg = write_config({"name": "bright", "data": [{"name": "bright-biology", "loader": "bright",
                                                     "domain": "biology", "examples": str(ex_path),
                                                     "documents": str(doc_path)}],
                        "splits": {"scheme": "none"}})
    out = cli("retrieve", cfg)
    assert out.returncode == 0, out.stderr
    run_file = next((tmp_path / "results" / "bright" / "retrieve").glob("*/run.trec"))
    ranked = [l.split() for l in run_file.read_text().splitlines()]
    assert not [r for r in ranked if r[0] == examples[0]["id"] and r[2] == excluded]
