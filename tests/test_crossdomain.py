"""Cross-domain matrices: trained on X (rows), tested on Y (columns), nDCG@10 with BM25 per column,
an average column and significance marks; BEIR and BRIGHT tables in their usual layouts.

The matrix is built from real rankings on real data (demo set, Climate-FEVER, TREC DL19): BM25,
BM25 with parameters "tuned" on one collection (standing in for trained cells: same SystemInfo
fields as the train stage writes), and BM25's ranking reversed as the zero-shot row."""
from __future__ import annotations

import pandas as pd
import pytest

from bench.config import ClimateFeverSource, DemoSource, Experiment, RetrieveConfig, TrecDLSource, load_experiment
from bench.data.collection import Run
from bench.data.loaders import load_climate_fever, load_demo, load_trec_dl
from bench.evaluate.ir import per_query
from bench.provenance import stamp
from bench.report.crossdomain import cross_domain_matrices, layout_tables
from bench.report.export import to_json_dict, to_latex, to_markdown
from bench.report.leaderboard import Leaderboard
from bench.systems import SystemInfo
from bench.report.stage import add_significance
from bench.retrieve.bm25 import bm25_run
from conftest import ROOT

TUNED = {"bm25-demo": (RetrieveConfig(depth=10, k1=1.5, b=0.9), "envri-demo"),
         "bm25-dl19": (RetrieveConfig(depth=10, k1=0.5, b=0.2), "dl19")}


@pytest.fixture(scope="module")
def board(shared_data):
    dl = shared_data / "trec-dl"
    cols = {"envri-demo": load_demo(DemoSource(name="envri-demo", loader="demo")),
            "climate-fever": load_climate_fever(ClimateFeverSource(
                name="climate-fever", loader="climate-fever", max_queries=40,
                path=shared_data / "climate-fever" / "climate-fever.jsonl")),
            "dl19": load_trec_dl(TrecDLSource(name="dl19", loader="trec-dl", candidates=dl / "bm25-top100-dl19.json",
                                              qrels=dl / "qrels.dl19-passage.txt"))}
    frames = []
    for ds, col in cols.items():
        bm25 = bm25_run(col, RetrieveConfig(depth=10), show_progress=False)
        runs = {"BM25": bm25, "reversed": Run("reversed", {q: {d: -s for d, s in docs.items()}
                                                           for q, docs in bm25.scores.items()})}
        runs.update({name: bm25_run(col, cfg, show_progress=False) for name, (cfg, _) in TUNED.items()})
        frames += [per_query(run, col.qrels, ["nDCG@10"], ds, system=name) for name, run in runs.items()]
    pq = pd.concat(frames, ignore_index=True)
    systems = {"BM25": SystemInfo("BM25", kind="first-stage"),
               "reversed": SystemInfo("reversed", kind="zero-shot", family="bm25")}
    systems.update({n: SystemInfo(n, kind="trained", family="bm25", method="grid", train_dataset=t)
                    for n, (_, t) in TUNED.items()})
    exp = Experiment.model_validate({"name": "xd", "data": [
        {"name": "envri-demo", "loader": "demo"},
        {"name": "climate-fever", "loader": "climate-fever", "path": "x.jsonl"},
        {"name": "dl19", "loader": "trec-dl", "candidates": "c.json", "qrels": "q.txt"}],
        "report": {"bootstrap_resamples": 0}})
    b = Leaderboard.from_per_query(pq, systems, stamp(exp.hash(), exp.seed))
    add_significance(b, pq, exp)
    return b


def test_matrix_rows_are_training_collections_with_bm25_per_column_and_an_average(board):
    (mat,) = cross_domain_matrices(board)
    assert (mat.family, mat.method, mat.measure) == ("bm25", "grid", "nDCG@10")
    assert mat.columns == ["envri-demo", "climate-fever", "dl19"]
    assert [r.label for r in mat.rows] == ["BM25", "zero-shot", "envri-demo", "dl19"]
    rows = {r.label: r for r in mat.rows}
    for c in mat.columns:
        assert rows["BM25"].cells[c] == pytest.approx(board.table.loc["BM25", (c, "nDCG@10")])
        assert rows["dl19"].cells[c] == pytest.approx(board.table.loc["bm25-dl19", (c, "nDCG@10")])
    assert rows["envri-demo"].average == pytest.approx(sum(rows["envri-demo"].cells.values()) / 3)
    assert rows["envri-demo"].in_domain == "envri-demo" and rows["dl19"].in_domain == "dl19"
    assert rows["BM25"].in_domain is None


def test_matrix_cells_carry_the_significance_marks_of_their_column(board):
    (mat,) = cross_domain_matrices(board)
    sig = board.significance[board.significance.measure == "nDCG@10"].set_index(["system", "dataset"])
    for r in mat.rows[1:]:
        for c in mat.columns:
            assert (r.marks[c] == "†") == bool(sig.loc[(r.system, c), "significant"]), (r.label, c)
    reversed_row = next(r for r in mat.rows if r.label == "zero-shot")
    assert all(reversed_row.marks[c] == "†" for c in mat.columns)  # reversing BM25 is worse everywhere
    md = to_markdown(board, "xd")
    assert "## Cross-domain: bm25 grid (nDCG@10; rows: trained on, columns: tested on" in md
    assert "| train \\ test | envri-demo | climate-fever | dl19 | Avg. |" in md
    assert r"\underline{" in to_latex(board, "xd")
    doc = to_json_dict(board, "xd")
    assert doc["cross_domain"][0]["rows"][0]["label"] == "BM25"


def test_bright_layout_orders_domains_as_the_paper_and_beir_layout_averages():
    rows = []
    for system, base in (("BM25", 0.1), ("model", 0.2)):
        for ds, bump in (("pony", 0.01), ("biology", 0.02), ("aops", 0.03), ("scifact", 0.04), ("nfcorpus", 0.05)):
            rows += [(system, ds, f"q{i}", "nDCG@10", base + bump + i / 100) for i in range(5)]
    pq = pd.DataFrame(rows, columns=["system", "dataset", "qid", "measure", "value"])
    b = Leaderboard.from_per_query(pq, {"BM25": SystemInfo("BM25"), "model": SystemInfo("model")}, {})
    b.report = {"loaders": {"pony": "bright", "biology": "bright", "aops": "bright", "scifact": "beir",
                            "nfcorpus": "beir"},
                "bright_domains": {"pony": "pony", "biology": "biology", "aops": "aops"}}
    beir, bright = layout_tables(b)
    assert beir.title == "BEIR layout" and beir.columns == ["scifact", "nfcorpus"]
    assert beir.rows[1].average == pytest.approx((0.24 + 0.02 + 0.25 + 0.02) / 2)
    assert bright.title == "BRIGHT layout" and bright.columns == ["biology", "pony", "aops"]
    from bench.report.export import matrix_markdown

    assert "| system | Bio. | Pony | AoPS | Avg. |" in matrix_markdown(bright, b)


def test_shipped_cross_domain_config_trains_on_two_collections_and_tests_on_four():
    exp = load_experiment(ROOT / "configs" / "cross-domain.yaml")
    assert [s.loader for s in exp.data] == ["demo", "climate-fever", "beir", "trec-dl"]
    assert exp.train is not None and exp.train.datasets == ["envri-demo", "climate-fever"]
    assert exp.evaluate.split == "test" and exp.report.baselines == ["BM25"]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~18 min on 2 busy cores: 2 Ray Train cells, then 12 re-rank jobs
def test_cross_domain_config_trains_on_two_collections_and_writes_the_matrix(shared_data, cli, tmp_path):
    """The shipped config end to end with the real train stage (Ray Train), tiny models, 2 steps."""
    import json

    res = cli("leaderboard", ROOT / "configs" / "cross-domain.yaml", "--set", f"results_dir={tmp_path}",
              "--set", "train.hyper.max_steps=2", "--set", "train.models.0.model=tiny-llama",
              "--set", "rerank.systems.0.model=tiny-llama", "--set", "data.1.max_queries=40",
              "--set", "data.2.max_queries=40", "--html", tmp_path / "site", timeout=3000)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((tmp_path / "cross-domain" / "leaderboard.json").read_text())
    (mat,) = doc["cross_domain"]
    assert mat["method"] == "sft" and mat["columns"] == ["envri-demo", "climate-fever", "scifact", "dl19"]
    assert [r["label"] for r in mat["rows"]] == ["BM25", "zero-shot", "envri-demo", "climate-fever"]
    assert [r["in_domain"] for r in mat["rows"]] == [None, None, "envri-demo", "climate-fever"]
    assert all(v is not None for r in mat["rows"] for v in r["cells"].values())
    md = (tmp_path / "cross-domain" / "leaderboard.md").read_text()
    assert "## Cross-domain: " in md and "differs significantly from BM25" in md
    assert (tmp_path / "site" / "cross-domain" / "index.html").is_file()
