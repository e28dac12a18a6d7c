"""The data plane (Ray Data actor pool) under failure: a worker process killed with SIGKILL in the
middle of re-ranking or of KernelSHAP is replaced, its batches run again, every row comes back
exactly once and the results equal an undisturbed computation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

EXPERIMENT = {
    "name": "plane", "seed": 5,
    "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
    "splits": {"scheme": "none"},
    "ray": {"num_cpus": 2},
    "evaluate": {"measures": ["nDCG@10"]},
}


def _start(args, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *map(str, args)], cwd=ROOT, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _plane_workers(driver: int) -> list[int]:
    """Data-plane worker processes of one CLI run (descendants of its driver: the test kills only those)."""
    from bench.plane import worker_pids

    return worker_pids(root=driver)


def _kill_one_worker_mid_stage(proc: subprocess.Popen, done_glob, log: Path, settle_s: float) -> int:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(_plane_workers(proc.pid)) < 2:
        time.sleep(0.2)
    time.sleep(settle_s)  # the actors have loaded their model and are working through batches
    workers = _plane_workers(proc.pid)
    assert workers and proc.poll() is None, log.read_text()[-3000:]
    assert not list(done_glob()), "the stage finished before the worker could be killed; make it longer"
    os.kill(workers[0], signal.SIGKILL)
    return workers[0]


def test_a_killed_reranking_worker_is_replaced_and_every_pair_is_scored_once(tmp_path, write_config):
    spec = {"name": "smollm2", "model": "smollm2-135m-instruct", "batch_size": 4, "max_length": 256}
    # 8 queries x 10 = 80 pairs: SmolLM2 keeps both actors busy well past the kill (about 20 s of
    # scoring), and the undisturbed reference pass stays short
    data = [{**EXPERIMENT["data"][0], "max_queries": 8}]
    cfg = write_config({**EXPERIMENT, "data": data,
                        "rerank": {"depth": 10, "actors": 2, "plane_batch_size": 8, "systems": [spec]}})
    out = tmp_path / "results" / "plane"
    log = tmp_path / "rerank.log"
    proc = _start(["rerank", cfg], log)
    try:
        killed = _kill_one_worker_mid_stage(proc, lambda: (out / "rerank").glob("*/_DONE.json"), log, settle_s=12)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not Path(f"/proc/{killed}").exists()
    from bench.config import ScorerSpec
    from bench.data.collection import Run
    from bench.pipeline import Pipeline
    from bench.config import load_experiment
    from bench.rerank.scorers import build_scorer

    run = Run.load_trec(next((out / "rerank").glob("*/run.trec")))
    cuts = json.loads(next((out / "rerank").glob("*/cuts.json")).read_text())
    p = Pipeline(load_experiment(cfg))
    col, first = p.dataset("envri-demo").collection, p.first_stage("envri-demo").run
    pairs = [(q, d) for q in sorted(col.queries) for d, _ in first.ranked(q, 10)]
    assert cuts["pairs"] == len(pairs) == 80
    import torch

    torch.set_num_threads(2)  # the stage is over: both cores for the reference pass (same scores to 1e-6)
    try:
        undisturbed = build_scorer(ScorerSpec(**spec)).score([col.queries[q] for q, _ in pairs],
                                                            [col.corpus[d].full_text() for _, d in pairs])
    finally:
        torch.set_num_threads(1)
    got = np.array([run.scores[q][d] for q, d in pairs])
    assert np.abs(got - undisturbed).max() < 1e-4, np.abs(got - undisturbed).max()


def test_a_killed_attribution_worker_is_replaced_and_every_item_is_explained_once(tmp_path, write_config):
    spec = {"name": "tiny", "model": "tiny-llama", "batch_size": 64, "max_length": 256}
    explain = {"systems": ["tiny"], "top_items": 1, "nsamples": 1200, "ks": [1, 3], "batch_size": 256, "actors": 2,
               "metrics": False, "repeat_seed_offset": None}
    cfg = write_config({**EXPERIMENT, "rerank": {"depth": 10, "actors": 1, "systems": [spec]}, "explain": explain})
    out = tmp_path / "results" / "plane"
    log = tmp_path / "explain.log"
    proc = _start(["explain", cfg], log)
    try:
        _kill_one_worker_mid_stage(proc, lambda: (out / "explain").glob("*/_DONE.json"), log, settle_s=8)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    items = [json.loads(line) for line in next((out / "explain").glob("*/items.jsonl")).read_text().splitlines()]
    assert len(items) == 12 and len({(i["qid"], i["docid"]) for i in items}) == 12
    assert all(i["status"] in ("ok", "k_clamped") for i in items), [i["status"] for i in items]
    # the same seed per item: a retried item's attributions equal a fresh, undisturbed computation
    from bench.config import ScorerSpec
    from bench.explain.config import ExplainConfig
    from bench.explain.item import explain_one
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(ScorerSpec(**{**spec, "batch_size": 256}))
    for item in items[:4]:
        fresh = explain_one(scorer, item["query"], item["text"],
                            ExplainConfig(**{k: v for k, v in explain.items() if k != "systems"}), seed=5)
        assert np.allclose(fresh["word_values"], item["word_values"], atol=1e-5)
