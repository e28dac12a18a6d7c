"""Seq2seq point-wise scorers (monoT5-style, one of R2R's baselines) on a tiny random-init T5 built locally
(T5Config + a byte-level BPE tokenizer trained with `tokenizers`, "true" / "false" single tokens): the score is
logit("true") - logit("false") at the first decoder step; the encoder input follows the one fitting rule; the
scorer re-ranks in a real run and joins the leaderboard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.config import ScorerSpec


@pytest.fixture(scope="module")
def t5():
    from bench.rerank.scorers import build_scorer

    return build_scorer(ScorerSpec(name="monoT5-tiny", kind="seq2seq", model="tiny-t5", max_length=64, batch_size=3))


def test_the_score_is_true_over_false_at_the_first_decoder_step(t5):
    """By hand: monoT5's input, the decoder's start token, the two rows of the first step's logits."""
    tok, model = t5.tokenizer, t5.model
    true_id, false_id = (tok(w, add_special_tokens=False)["input_ids"] for w in ("true", "false"))
    assert len(true_id) == len(false_id) == 1
    queries = ["ocean heat content", "soil carbon", "sea ice extent Arctic"]
    items = ["Sea temperature profiles from Argo floats.", "Soil organic carbon stocks in European forests, 2010.",
             "Daily sea ice concentration from passive microwave satellites over the Arctic since 1979."]
    scores = t5.score(queries, items)  # one padded batch of three
    for q, d, s in zip(queries, items, scores):
        enc = tok(f"Query: {q} Document: {d} Relevant:", return_tensors="pt")
        assert enc["input_ids"][0, -1].item() == tok.eos_token_id  # T5's closing </s>
        with torch.inference_mode():
            logits = model(**enc, decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits
        assert s == pytest.approx(float(logits[0, 0, true_id[0]] - logits[0, 0, false_id[0]]), abs=1e-4)
    assert len(set(np.round(scores, 5))) == 3


def test_the_encoder_input_follows_the_one_fitting_rule(t5):
    """The template (and </s>) is never cut; the item is cut first, to half the room; then the query."""
    tok = t5.tokenizer
    short_q, long_d = "ocean heat", "Sea temperature profiles from Argo floats in the North Atlantic. " * 20
    f = t5.fit(short_q, long_d)
    assert f.item_cut and not f.query_cut and f.query == short_q
    assert f.input.startswith(f"Query: {short_q} Document: ") and f.input.endswith(" Relevant:")
    assert len(f.encoding["input_ids"]) <= 64 and f.encoding["input_ids"][-1] == tok.eos_token_id
    long_q = "ocean heat content trends in the upper 2000 m of the North Atlantic " * 10
    g = t5.fit(long_q, long_d)
    assert g.item_cut and g.query_cut and g.input.endswith(" Relevant:")
    room = 64 - len(tok("Query:  Document:  Relevant:")["input_ids"])
    assert len(tok(g.item, add_special_tokens=False)["input_ids"]) >= room // 2 - 1  # the item keeps half the room
    assert t5.fit(*[g.query, g.item]).input == g.input  # a fitted pair fits again unchanged
    assert t5.score([long_q], [long_d])[0] == pytest.approx(t5.score_fitted([g])[0], abs=1e-5)


def test_a_seq2seq_system_re_ranks_in_a_run_and_joins_the_leaderboard(write_config, cli, tmp_path, t5):
    cfg = write_config({"name": "s2s", "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 4}],
                        "splits": {"scheme": "none"}, "ray": {"num_cpus": 1},
                        "evaluate": {"measures": ["nDCG@5", "nDCG@10"]},
                        "rerank": {"depth": 10, "systems": [{"name": "monoT5-tiny", "kind": "seq2seq",
                                                             "model": "tiny-t5", "max_length": 64}]}})
    r = cli("run", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "results" / "s2s"
    board = json.loads((out / "leaderboard.json").read_text())
    rows = {row["system"]: row for row in board["rows"]}
    assert rows["monoT5-tiny"]["nDCG@10"] is not None and rows["monoT5-tiny"]["info"]["family"] == "t5"
    assert board["truncation"]["monoT5-tiny"]["envri-demo"]["pairs"] == 40
    assert "monoT5-tiny" in (out / "leaderboard.md").read_text()
    # the run's ranking of a query is the in-process scorer's order of its ten BM25 candidates
    from bench.data.collection import Run

    run = Run.load_trec(next((out / "rerank").glob("*/run.trec")), "monoT5-tiny")
    first = Run.load_trec(next((out / "retrieve").glob("*/run.trec")), "BM25")
    from bench.config import DemoSource
    from bench.data.loaders import load_source

    col = load_source(DemoSource(name="envri-demo", loader="demo", max_queries=4))
    q = sorted(col.queries)[0]
    docs = [d for d, _ in first.ranked(q, 10)]
    scores = t5.score([col.queries[q]] * len(docs), [col.corpus[d].full_text() for d in docs])
    assert [d for d, _ in run.ranked(q, 10)] == [docs[i] for i in np.argsort(-scores, kind="stable")]
