"""The end-to-end pipeline on the embedded demo data: leaderboard, caching, resume."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pandas as pd

from bench.cli import main
from conftest import ROOT, ctrl_c_reaches_python

DEMO_EXPERIMENT = {
    "name": "e2e",
    "seed": 3,
    "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
    "splits": {"scheme": "random", "train": 0.5, "valid": 0.25, "test": 0.25},
    "rerank": {"depth": 10, "actors": 2, "systems": [
        {"name": "tiny-qwen2-zeroshot", "model": "tiny-qwen2", "prompt": "plain", "batch_size": 8}]},
    "evaluate": {"measures": ["nDCG@5", "nDCG@10", "RR(rel=5)", "AP(rel=5)", "R@100"], "split": "test"},
}


def test_run_writes_a_leaderboard_with_bm25_first_then_the_llm_reranker(write_config, ray_local, tmp_path, capsys):
    cfg = write_config(DEMO_EXPERIMENT)
    assert main(["run", str(cfg)]) == 0
    out = tmp_path / "results" / "e2e"
    board = pd.read_csv(out / "leaderboard.csv", index_col="system")
    assert list(board.index) == ["BM25", "tiny-qwen2-zeroshot"]
    assert {"nDCG@5", "nDCG@10", "RR(rel=5)", "AP(rel=5)", "R@100"} <= set(board.columns)
    assert board.loc["BM25", "nDCG@10"] > 0
    md = (out / "leaderboard.md").read_text()
    assert "| BM25" in md and "tiny-qwen2-zeroshot" in md
    stamp = json.loads((out / "leaderboard.json").read_text())["provenance"]
    assert stamp["seed"] == 3 and len(stamp["config_hash"]) == 16 and stamp["versions"]["ir-measures"]
    assert stamp["data_checksums"]["envri-demo"]
    # per-query results are kept, for every system and measure, only on the test split
    per_query = pd.read_csv(out / "per_query.csv", dtype={"qid": str})
    assert set(per_query.system) == {"BM25", "tiny-qwen2-zeroshot"}
    assert per_query.qid.nunique() == 3
    # The re-ranked run keeps BM25's candidates: only the order of the top 10 changes.
    bm25 = next((out / "retrieve").glob("*/run.trec")).read_text().split("\n")
    rr = next((out / "rerank").glob("*/run.trec")).read_text().split("\n")
    assert len([l for l in rr if l]) <= len([l for l in bm25 if l])

    # Re-running the unchanged experiment recomputes nothing and says so.
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("_DONE.json")}
    assert main(["run", str(cfg)]) == 0
    assert "nothing to recompute" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("_DONE.json")}

    # Changing one measure re-evaluates, but neither re-retrieves nor re-ranks.
    capsys.readouterr()
    assert main(["run", str(cfg), "--set", "evaluate.measures=[nDCG@10, P@5]"]) == 0
    assert "P@5" in pd.read_csv(out / "leaderboard.csv").columns
    for p, mtime in before.items():
        if "/evaluate/" not in str(p):
            assert p.stat().st_mtime_ns == mtime


def test_an_interrupted_run_resumes_from_its_finished_stages(write_config, tmp_path):
    cfg = write_config({**DEMO_EXPERIMENT, "name": "resume"})
    out = tmp_path / "results" / "resume"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(cfg)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_reaches_python)
    deadline = time.time() + 120
    while not list((out / "retrieve").glob("*/_DONE.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # like Ctrl-C while the re-rank stage starts
    proc.communicate(timeout=120)
    assert not (out / "leaderboard.md").exists()
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("_DONE.json")}
    assert any("/retrieve/" in str(p) for p in finished)

    again = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(cfg)], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(r"retrieve done in [0-9.]+s \(envri-demo: BM25, \d+ queries; 0 computed, 1 cached\)", again.stderr), \
        again.stderr
    assert (out / "leaderboard.md").exists()
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime  # finished work was not redone
