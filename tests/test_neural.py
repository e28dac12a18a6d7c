"""Neural systems a leaderboard can trust (issue 11): published runs as systems, dense and hybrid first
stages, bi- and cross-encoders, and the reference numbers they reproduce."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.data.collection import Run
from bench.retrieve.dense import reciprocal_rank_fusion, score_fusion


def test_reciprocal_rank_fusion_matches_a_hand_computation():
    a = Run("a", {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}})
    b = Run("b", {"q": {"d3": 9.0, "d1": 8.0}})
    fused = reciprocal_rank_fusion([a, b], k=60).scores["q"]
    assert fused["d1"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["d3"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d2"] == pytest.approx(1 / 62)
    assert list(fused) == ["d1", "d3", "d2"]  # best first


def test_score_fusion_normalises_each_run_before_weighting():
    a = Run("a", {"q": {"d1": 10.0, "d2": 0.0}})
    b = Run("b", {"q": {"d1": 0.2, "d2": 0.6}})
    fused = score_fusion([a, b], [0.5, 0.5]).scores["q"]
    assert fused == {"d1": pytest.approx(0.5), "d2": pytest.approx(0.5)}
    assert score_fusion([a, b], [0.8, 0.2]).scores["q"]["d1"] == pytest.approx(0.8)


def test_run_file_systems_join_the_leaderboard_exactly_as_published(shared_data, tmp_path, write_config, cli):
    """The two published listwise runs of DL19 score what their sources say (ir-measures, 4 places)."""
    dl = shared_data / "trec-dl"
    cfg = write_config({"name": "runs", "splits": {"scheme": "none"}, "retrieve": {"method": "candidates"},
                        "data": [{"name": "dl19", "loader": "trec-dl", "candidates": str(dl / "bm25-top100-dl19.json"),
                                  "qrels": str(dl / "qrels.dl19-passage.txt"), "run": str(dl / "bm25-top100-dl19.trec")}],
                        "rerank": {"systems": [
                            {"name": "RankVicuna-7B", "kind": "run", "run": str(dl / "runs/rankvicuna-7b-bm25top100-dl19.trec")},
                            {"name": "RankGPT-3.5", "kind": "run",
                             "run": str(dl / "runs/rankgpt-gpt35turbo-bm25top100-dl19.trec")}]},
                        "evaluate": {"measures": ["nDCG@10"]}})
    out = cli("leaderboard", cfg, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["system"]: r for r in json.loads((tmp_path / "results/runs/leaderboard.json").read_text())["rows"]}
    assert round(rows["RankVicuna-7B"]["nDCG@10"], 4) == 0.6682  # RankVicuna paper: 0.6682
    assert round(rows["RankGPT-3.5"]["nDCG@10"], 4) == 0.6868
    assert round(rows["BM25"]["nDCG@10"], 4) == 0.5058
    assert rows["RankVicuna-7B"]["info"]["kind"] == "run"
    sig = json.loads((tmp_path / "results/runs/leaderboard.json").read_text())["significance"]
    assert {s["system"] for s in sig if s["baseline"] == "BM25"} == {"RankVicuna-7B", "RankGPT-3.5"}


@pytest.mark.parametrize("line, expected", [
    ("q1 Q0 ghost 1 2.0 x", "run.trec:2: run of system 'published' names unknown document 'ghost' (query 'q1')"),
    ("q1 Q0 d1 1 2.0 x", "run.trec:2: duplicate document 'd1' for query 'q1' in run"),
])
def test_a_run_file_naming_an_unknown_or_repeated_document_is_one_line_naming_its_line(tmp_path, write_config, cli,
                                                                                        line, expected):
    (tmp_path / "cands.json").write_text(json.dumps([{"query": "ocean", "hits": [
        {"qid": "q1", "docid": "d1", "content": "ocean text", "rank": 1, "score": 2.0},
        {"qid": "q1", "docid": "d2", "content": "sea text", "rank": 2, "score": 1.0}]}]))
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 3.0 x\n" + line + "\n")
    cfg = write_config({"name": "badrun", "splits": {"scheme": "none"},
                        "data": [{"name": "dl", "loader": "trec-dl", "candidates": str(tmp_path / "cands.json"),
                                  "qrels": str(tmp_path / "qrels.txt")}],
                        "rerank": {"systems": [{"name": "published", "kind": "run", "run": str(tmp_path / "run.trec")}]}})
    out = cli("run", cfg, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert not (tmp_path / "results").exists()


def test_dense_and_hybrid_first_stages_with_cached_embeddings(tmp_path, write_config, cli):
    base = {"data": [{"name": "envri-demo", "loader": "demo"}], "splits": {"scheme": "none"},
            "evaluate": {"measures": ["nDCG@10", "R@100"]}}
    dense = write_config({**base, "name": "dense", "retrieve": {"method": "dense", "depth": 50}}, "dense.yaml")
    out = cli("leaderboard", dense, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    board = {r["system"]: r for r in json.loads((tmp_path / "results/dense/leaderboard.json").read_text())["rows"]}
    assert set(board) == {"Dense"} and board["Dense"]["nDCG@10"] > 0.5
    assert len(list((tmp_path / "results/dense/embed").glob("*/corpus.npy"))) == 1
    hybrid = write_config({**base, "name": "dense", "retrieve": {"method": "hybrid", "depth": 50}}, "hybrid.yaml")
    out = cli("leaderboard", hybrid, timeout=600)  # same experiment folder: the corpus is not encoded again
    assert out.returncode == 0, out.stderr[-2000:]
    assert "retrieve done" in out.stderr and len(list((tmp_path / "results/dense/embed").glob("*/_DONE.json"))) == 1
    board = {r["system"]: r for r in json.loads((tmp_path / "results/dense/leaderboard.json").read_text())["rows"]}
    assert "Hybrid" in board and board["Hybrid"]["nDCG@10"] > 0.5


def test_minilm_trains_as_a_cross_encoder_and_as_a_contrastive_bi_encoder(tmp_path, write_config, cli):
    """all-MiniLM-L6-v2 (offline weights) as the grid's encoder family: reward modelling gives a
    cross-encoder, contrastive training (MultipleNegativesRankingLoss) a bi-encoder; each model
    entry trains only its own methods."""
    cfg = write_config({"name": "ce", "seed": 1, "ray": {"num_cpus": 2},
                        "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
                        "splits": {"scheme": "random", "train": 0.6, "valid": 0.2, "test": 0.2},
                        "evaluate": {"measures": ["nDCG@10"], "split": "test"},
                        "rerank": {"systems": [{"name": "MiniLM-bi", "kind": "bi-encoder", "model": "all-minilm-l6-v2"}]},
                        "train": {"models": [{"model": "all-minilm-l6-v2", "name": "MiniLM", "methods": ["rm"],
                                              "hyper": {"full_finetune": True, "lr": 5.0e-5}},
                                             {"model": "all-minilm-l6-v2", "name": "MiniLM-dual",
                                              "methods": ["contrastive"],
                                              "hyper": {"full_finetune": True, "lr": 5.0e-5, "batch_size": 8}}],
                                  "methods": ["rm", "contrastive"],
                                  "hyper": {"max_steps": 3, "batch_size": 4, "max_length": 128,
                                            "logging_steps": 1, "save_steps": 2}}})
    out = cli("run", cfg, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    cells = {c["name"]: c for c in json.loads((tmp_path / "results/ce/table1.json").read_text())["cells"]}
    assert sorted(cells) == ["MiniLM-dual-contrastive", "MiniLM-rm"], "each model trains its own methods only"
    table = (tmp_path / "results/ce/table1.md").read_text()
    assert "nan" not in table and re.search(r"\|\s+-\s+\|", table), table  # "-": a method that model skips
    for name in cells:
        assert cells[name]["status"] == "ok" and cells[name]["family"] == "bert" and cells[name]["steps"] == 3
    rows = {r["system"]: r for r in json.loads((tmp_path / "results/ce/leaderboard.json").read_text())["rows"]}
    assert rows["MiniLM-rm"]["nDCG@10"] is not None and rows["MiniLM-bi"]["nDCG@10"] is not None
    assert rows["MiniLM-dual-contrastive"]["nDCG@10"] is not None
    assert rows["MiniLM-dual-contrastive"]["info"]["method"] == "contrastive"
    # the trained bi-encoder is a sentence-transformers model folder the bi-encoder scorer loads
    dual = cells["MiniLM-dual-contrastive"]
    assert (Path(dual["path"]) / "model" / "modules.json").is_file()
    # held-out pairs scored before and after by the same bi-encoder scorer; three steps moved its scores
    assert dual["accuracy_before"] is not None and dual["pairwise_accuracy"] is not None
    assert dual["score_shift"] > 0 and not dual["stalled"]


def test_the_published_neural_reference_numbers_reproduce_with_verify(shared_data, cli):
    """configs/verify-neural.yaml: the two DL19 runs (exact), MiniLM re-ranking DL19 (0.6424) and dense
    SciFact (0.6451, MTEB), within the tolerances of configs/expected/verify-neural.yaml."""
    out = cli("verify", "configs/verify-neural.yaml", timeout=3000)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert out.stdout.count("OK") + out.stdout.count("within tolerance") >= 5 and "FAIL" not in out.stdout


test_the_published_neural_reference_numbers_reproduce_with_verify = pytest.mark.slow(
    test_the_published_neural_reference_numbers_reproduce_with_verify)
