"""Leaderboard honesty (issue 18): a score that is not what it seems is marked in every table; a trained
system is not silently scored on its training queries; rankings break ties as trec_eval does and run
files keep every digit.

Systems are real rankings of the embedded demo set (BM25 and variants), exported by the real writers."""
from __future__ import annotations

import copy
import json

import ir_measures
import pandas as pd
import pytest

from bench.config import DemoSource, RetrieveConfig
from bench.data.collection import Run
from bench.data.loaders import load_demo
from bench.evaluate.ir import per_query
from bench.report.export import write_exports
from bench.report.flags import REPAIRED, TRAINING_QUERIES, repaired_flags, training_query_flags
from bench.report.leaderboard import Leaderboard
from bench.retrieve.bm25 import bm25_run
from bench.systems import SystemInfo


# ------------------------------------------------------------------------------------------ ties
def test_rankings_break_ties_as_trec_eval_does():
    """A run of tied scores: for every document, the rank our `Run.ranked` gives it is the rank pytrec_eval
    (through ir-measures) gives it - read off RR with that document as the only relevant one. The old
    docstring said "by docid, as trec_eval does" while sorting ascending; trec_eval sorts descending."""
    docs = ["d10", "d2", "a", "b-7", "Z", "d1"]
    scores = {d: (1.0 if i < 4 else 0.5) for i, d in enumerate(docs)}
    run = Run("tied", {"q": scores})
    ours = [d for d, _ in run.ranked("q")]
    for d in docs:
        rr = ir_measures.calc_aggregate([ir_measures.RR], [ir_measures.Qrel("q", d, 1)],
                                        [ir_measures.ScoredDoc("q", x, s) for x, s in scores.items()])[ir_measures.RR]
        assert rr == pytest.approx(1.0 / (ours.index(d) + 1)), (d, ours)


def test_a_run_file_keeps_every_digit_so_no_new_ties_appear(tmp_path):
    """Scores were written with 6 decimals: two float32 log-odds a few 1e-7 apart became a tie on disk and
    the evaluated order was the tie-break's, not the model's."""
    scores = {"a": 5.000000119, "b": 5.000000357, "c": -1e-9, "d": 0.0}
    run = Run("close", {"q": scores})
    loaded = Run.load_trec(run.save_trec(tmp_path / "run.trec"), "close")
    assert loaded.scores["q"] == scores and loaded.ranked("q") == run.ranked("q")


# ------------------------------------------------------------------------------------------ flags
@pytest.fixture(scope="module")
def board():
    col = load_demo(DemoSource(name="demo", loader="demo"))
    bm25 = bm25_run(col, RetrieveConfig(depth=10), show_progress=False)
    other = bm25_run(col, RetrieveConfig(depth=10, k1=1.5, b=0.9), show_progress=False)
    pq = pd.concat([per_query(bm25, col.qrels, ["nDCG@10"], "demo", system="BM25"),
                    per_query(other, col.qrels, ["nDCG@10"], "demo", system="RankGPT-tiny"),
                    per_query(other, col.qrels, ["nDCG@10"], "demo", system="tiny-sft")], ignore_index=True)
    systems = {"BM25": SystemInfo("BM25", kind="first-stage"),
               "RankGPT-tiny": SystemInfo("RankGPT-tiny", kind="listwise", method="rankgpt"),
               "tiny-sft": SystemInfo("tiny-sft", kind="trained", family="llama", method="sft", train_dataset="demo")}
    from bench.provenance import stamp

    b = Leaderboard.from_per_query(pq, systems, stamp("x", 1), measures=["nDCG@10"])
    from bench.evaluate.significance import compare

    b.significance = compare(pq, ["BM25"], n_resamples=0)
    b.report = {"baselines": ["BM25"], "test": "t-test", "correction": "holm", "alpha": 0.05}
    b.listwise = {"RankGPT-tiny": {"demo": {"totals": {"calls": 17, "ids": 170, "unranked": 161}}}}
    return b


def test_mostly_repaired_listwise_answers_and_training_queries_are_flagged_in_every_table(board, tmp_path):
    board = copy.copy(board)
    board.flags = (repaired_flags(board.listwise, 0.2)
                   + training_query_flags(board.systems, ["demo"], "all"))
    assert [(f.system, f.symbol) for f in board.flags] == [("RankGPT-tiny", REPAIRED), ("tiny-sft", TRAINING_QUERIES)]
    paths = write_exports(board, tmp_path, "flags")
    md = paths["md"].read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("|")}
    assert REPAIRED in rows["RankGPT-tiny"] and TRAINING_QUERIES in rows["tiny-sft"] and REPAIRED not in rows["BM25"]
    assert "161 of 170 identifiers (95%) were placed by the repair rule" in md
    assert "evaluated on queries it was trained on" in md
    csv = pd.read_csv(paths["csv"], index_col=0)
    assert csv.loc["RankGPT-tiny", "flags"].startswith(REPAIRED) and csv.loc["tiny-sft", "flags"].startswith(TRAINING_QUERIES)
    doc = json.loads(paths["json"].read_text())
    marks = {(s["system"], s["measure"]): s["mark"] for s in doc["scores"]}
    assert REPAIRED in marks[("RankGPT-tiny", "nDCG@10")] and {f["symbol"] for f in doc["flags"]} == {REPAIRED, TRAINING_QUERIES}
    assert REPAIRED in doc["report"]["legend"]
    tex = paths["tex"].read_text()
    assert r"\triangle" in tex and r"\ast" in tex
    console = board.console_table()
    assert f"RankGPT-tiny {REPAIRED}" in console and f"tiny-sft {TRAINING_QUERIES}" in console


def test_a_listwise_system_that_ranked_its_ids_is_not_flagged(board):
    honest = {"RankGPT-tiny": {"demo": {"totals": {"calls": 17, "ids": 170, "unranked": 9}}}}
    assert repaired_flags(honest, 0.2) == []
    assert training_query_flags(board.systems, ["demo"], "test") == []  # held-out queries: nothing to flag


def test_r2r_tables_carry_the_flags(board):
    from bench.config import Experiment
    from bench.r2r.tables import r2r_table1

    exp = Experiment.model_validate({"name": "x", "data": [{"name": "demo", "loader": "demo"}],
                                     "evaluate": {"measures": ["nDCG@5", "nDCG@10"]}})
    col = load_demo(DemoSource(name="demo", loader="demo"))
    bm25 = bm25_run(col, RetrieveConfig(depth=10), show_progress=False)
    pq = pd.concat([per_query(bm25, col.qrels, ["nDCG@5", "nDCG@10"], "demo", system=s)
                    for s in ("BM25", "RankGPT-tiny")], ignore_index=True)
    table, _ = r2r_table1(pq, board.systems, exp, repaired_flags(board.listwise, 0.2))
    assert all(REPAIRED in v for v in table.loc["RankGPT-tiny"])


# ------------------------------------------------------------------------------------------ held-out
def test_a_trained_system_on_its_training_queries_is_refused_with_one_line(write_config, cli, tmp_path):
    cfg = write_config({"name": "leak", "data": [{"name": "demo", "loader": "demo", "max_queries": 6}],
                        "evaluate": {"measures": ["nDCG@10"], "split": "all"},
                        "train": {"models": [{"model": "tiny-qwen2"}], "methods": ["sft"]}})
    out = cli("run", cfg)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "evaluate.split: 'all' includes the training queries" in lines[0], lines
    assert "allow_training_queries" in lines[0]
    assert not (tmp_path / "results" / "leak").exists()
