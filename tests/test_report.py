"""Exports a paper can use: every table marks significant differences, p-values reach CSV and JSON,
the JSON follows its documented schema with provenance, LaTeX is booktabs.

Systems are real rankings of the embedded demo set: BM25 as configured, BM25 with other
parameters, and BM25's own ranking reversed (a system that is certainly worse)."""
from __future__ import annotations

import json

import jsonschema
import pandas as pd
import pytest
from scipy import stats

from bench.config import DemoSource, Experiment, RetrieveConfig
from bench.data.collection import Run
from bench.data.loaders import load_demo
from bench.evaluate.ir import per_query
from bench.provenance import stamp
from bench.report.export import schema, to_json_dict
from bench.report.leaderboard import Leaderboard
from bench.systems import SystemInfo
from bench.report.stage import add_significance
from bench.retrieve.bm25 import bm25_run

MEASURES = ["nDCG@10", "RR(rel=5)"]


@pytest.fixture(scope="module")
def demo_board():
    col = load_demo(DemoSource(name="demo", loader="demo"))
    bm25 = bm25_run(col, RetrieveConfig(depth=10), show_progress=False)
    other = bm25_run(col, RetrieveConfig(depth=10, k1=1.5, b=0.9), show_progress=False)
    reversed_ = Run("reversed", {q: {d: -s for d, s in docs.items()} for q, docs in bm25.scores.items()})
    pq = pd.concat([per_query(bm25, col.qrels, MEASURES, "demo", system="BM25"),
                    per_query(other, col.qrels, MEASURES, "demo", system="bm25-k1.5"),
                    per_query(reversed_, col.qrels, MEASURES, "demo", system="reversed")], ignore_index=True)
    systems = {"BM25": SystemInfo("BM25", kind="first-stage"),
               "bm25-k1.5": SystemInfo("bm25-k1.5", kind="zero-shot", family="bm25"),
               "reversed": SystemInfo("reversed", kind="zero-shot", family="bm25")}
    exp = Experiment.model_validate({"name": "demo-report", "data": [{"name": "demo", "loader": "demo"}],
                                     "report": {"bootstrap_resamples": 200}})
    board = Leaderboard.from_per_query(pq, systems, stamp(exp.hash(), exp.seed, {"demo": "abc"}))
    add_significance(board, pq, exp)
    return board, pq


def test_reversed_bm25_is_marked_significantly_worse_with_scipy_p_values(demo_board):
    board, pq = demo_board
    sig = board.significance.set_index(["system", "measure"])
    row = sig.loc[("reversed", "nDCG@10")]
    wide = pq[pq.measure == "nDCG@10"].pivot(index="qid", columns="system", values="value")
    assert row["p_value"] == pytest.approx(stats.ttest_rel(wide["reversed"], wide["BM25"]).pvalue, rel=1e-12)
    assert row["significant"] and row["delta"] < 0 and row["ci_high"] < 0 and row["cohens_d"] < 0
    # Holm over the two systems compared with BM25 on nDCG@10
    ps = sorted(sig.xs("nDCG@10", level="measure")["p_value"])
    assert row["p_adjusted"] == pytest.approx(min(1.0, 2 * ps[0]))


def test_every_export_marks_the_difference_and_carries_p_values(demo_board, tmp_path):
    board, _ = demo_board
    paths = board.write(tmp_path, "Demo report")
    assert {"md", "csv", "json", "tex", "significance"} <= set(paths)
    md = paths["md"].read_text()
    worse = board.table.loc["reversed", ("demo", "nDCG@10")]
    assert f"{worse:.4f}†" in md and "† differs significantly from BM25 (paired t-test, Holm-corrected p < 0.05)" in md
    tex = paths["tex"].read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert f"{worse:.4f}$^{{\\dagger}}$" in tex and "Holm-corrected p $<$ 0.05" in tex
    csv = pd.read_csv(paths["significance"])
    assert {"p_value", "p_adjusted", "significant", "cohens_d", "ci_low", "ci_high"} <= set(csv.columns)
    assert len(csv) == 4  # 2 systems x 2 measures against BM25
    doc = json.loads(paths["json"].read_text())
    jsonschema.validate(doc, schema())
    assert doc["provenance"]["seed"] == 42 and doc["provenance"]["data_checksums"] == {"demo": "abc"}
    assert doc["provenance"]["versions"]["scipy"] and doc["provenance"]["config_hash"]
    marks = {(s["system"], s["measure"]): s["mark"] for s in doc["scores"]}
    assert marks[("reversed", "nDCG@10")] == "†" and marks[("BM25", "nDCG@10")] == ""
    by_key = {(s["system"], s["measure"]): s["p_value"] for s in doc["significance"]}
    for r in csv.itertuples():
        assert by_key[(r.system, r.measure)] == pytest.approx(r.p_value, rel=1e-5)


def test_schema_rejects_a_leaderboard_without_provenance(demo_board):
    board, _ = demo_board
    doc = json.loads(json.dumps(to_json_dict(board, "t")))
    del doc["provenance"]["config_hash"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_bad_baseline_is_a_one_line_input_error_before_any_work(write_config, cli):
    cfg = write_config({"name": "bad-baseline", "data": [{"name": "demo", "loader": "demo"}],
                        "report": {"baselines": ["BM25", "nope"]}})
    res = cli("leaderboard", cfg)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "rerank-bench: error: report.baselines: no system named 'nope'; expected one of ['BM25']")
    assert not (cfg.parent / "results" / "bad-baseline").exists()


def test_a_failed_baseline_is_skipped_with_a_warning_and_the_others_still_compared(demo_board, caplog):
    board, pq = demo_board
    systems = {**board.systems, "cell": SystemInfo("cell", kind="trained", status="failed", error="OOM")}
    b = Leaderboard.from_per_query(pq, systems, board.provenance)
    exp = Experiment.model_validate({"name": "x", "data": [{"name": "demo", "loader": "demo"}],
                                     "report": {"baselines": ["cell", "BM25"], "bootstrap_resamples": 0}})
    add_significance(b, pq, exp)
    assert set(b.significance["baseline"]) == {"BM25"} and b.report["baselines"] == ["BM25"]
    assert "baseline cell has no results (OOM)" in caplog.text
    assert "cell" in b.table.index  # the failed cell keeps its row
