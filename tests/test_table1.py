"""The paper's Table 1 measured the way the paper measures it: for every cell, on the held-out (valid split)
queries, before and after training, one loss common to every method (mean -log sigmoid(s_chosen - s_rejected)
of the cell's own scorer over held-out pairs) and top-1 accuracy (is the top-scored item a highest-graded
one); each trainer's own loss and the pairwise accuracy stay as extra columns. `rerank-bench train --dry-run`
lists the paper's 16 cells with their settings and trains nothing."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from conftest import ROOT

GRID = {"epochs": 1, "max_steps": 2, "batch_size": 4, "max_length": 160, "lr": 0.002, "lora_r": 4, "lora_alpha": 8,
        "logging_steps": 1, "save_steps": 2}


def test_table1_has_the_common_held_out_loss_and_top1_accuracy_for_every_cell(write_config, cli, tmp_path):
    tree = {"name": "t1", "seed": 7, "ray": {"num_cpus": 2},
            "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
            "splits": {"scheme": "random", "train": 0.5, "valid": 0.25, "test": 0.25},
            "evaluate": {"measures": ["nDCG@10"], "split": "test"},
            "train": {"models": [{"model": "tiny-qwen2"}], "methods": ["sft", "rm", "dpo", "ppo"],
                      "max_concurrent_cells": 1, "hyper": GRID}}
    cfg = write_config(tree)
    out = cli("train", cfg, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    root = tmp_path / "results" / "t1"
    doc = json.loads((root / "table1.json").read_text())
    cells = {c["method"]: c for c in doc["cells"]}
    assert sorted(cells) == ["dpo", "ppo", "rm", "sft"]

    # the held-out data, rebuilt here the way the grid builds it
    from bench.config import Experiment
    from bench.data.pairs import as_records, pointwise_items, preference_pairs
    from bench.pipeline import Pipeline
    from bench.rerank.scorers import build_scorer
    from bench.train.grid import CellResult, TrainGrid, trained_system

    exp = Experiment.model_validate(json.loads(json.dumps(tree | {"results_dir": str(tmp_path / "results")})))
    p = Pipeline(exp)
    ds, run = p.dataset("envri-demo"), p.first_stage("envri-demo").run
    valid = ds.splits["valid"]
    pairs = as_records(preference_pairs(ds.collection, run, valid, 10))
    items = as_records(pointwise_items(ds.collection, run, valid, 10))
    assert len(valid) == 3 and pairs and items

    def by_hand(scorer) -> tuple[float, float]:
        """The two numbers, from the scorer's scores and this test's own arithmetic."""
        s = dict(zip([(it["qid"], it["docid"]) for it in items],
                     scorer.score([it["query"] for it in items], [it["text"] for it in items]).astype(np.float64)))
        loss = np.mean([math.log1p(math.exp(-(s[(p["qid"], p["chosen_docid"])] - s[(p["qid"], p["rejected_docid"])])))
                        for p in pairs])
        hits = []
        for q in valid:
            mine = [it for it in items if it["qid"] == q]
            top = max(mine, key=lambda it: s[(q, it["docid"])])
            hits.append(top["grade"] == max(it["grade"] for it in mine))
        return float(loss), float(np.mean(hits))

    grid = {c.method: c for c in TrainGrid(p).plan()}
    for method, c in cells.items():
        assert c["status"] == "ok", c
        for k in ("pair_loss_before", "pair_loss", "top1_before", "top1_accuracy"):
            assert c[k] is not None and math.isfinite(c[k]), (method, k, c)
        assert 0 <= c["top1_accuracy"] <= 1 and c["pair_loss"] > 0 and c["n_valid_queries"] == 3
        spec, _ = trained_system(CellResult(grid[method], "ok", path=root / "train" / grid[method].key), exp.train)
        loss, top1 = by_hand(build_scorer(spec.model_copy(update={"dtype": "float32"})))
        assert c["pair_loss"] == pytest.approx(loss, abs=2e-4), method
        assert c["top1_accuracy"] == pytest.approx(top1), method
        if method != "rm":  # the untrained relevance neuron of the base model (an RM's head starts random)
            base = spec.model_copy(update={"adapter": None, "model": "tiny-qwen2", "dtype": "float32"})
            loss0, top0 = by_hand(build_scorer(base))
            assert c["pair_loss_before"] == pytest.approx(loss0, abs=2e-4), method
            assert c["top1_before"] == pytest.approx(top0), method
    md = (root / "table1.md").read_text()
    for col in ("tiny-qwen2 pair loss", "tiny-qwen2 top-1", "tiny-qwen2 trainer loss / pairwise acc"):
        assert col in doc["table"]["columns"], doc["table"]["columns"]
    assert "tiny-qwen2 pair loss" in md and "tiny-qwen2 top-1" in md and "Each trainer's own final loss" in md
    assert re.search(r"\| sft +\| [0-9.]+ → [0-9.]+ +\| [0-9.]+ → [0-9.]+ +\|", md), md


def test_train_dry_run_lists_the_papers_16_cells_with_their_settings_and_trains_nothing(cli, tmp_path):
    r = cli("train", ROOT / "configs" / "paper.yaml", "--dry-run", "--set", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    cells = [line for line in r.stdout.splitlines() if re.match(r"^\S+-(sft|rm|dpo|ppo)\s", line)]
    assert len(cells) == 16, r.stdout
    methods = {m: sum(f"-{m} " in line for line in cells) for m in ("sft", "rm", "dpo", "ppo")}
    assert methods == {"sft": 4, "rm": 4, "dpo": 4, "ppo": 4}, r.stdout
    for line in cells:  # the paper's settings (arXiv 2508.18444): 8 epochs, lr 2e-5, batch 4, max length 2048
        assert "epochs=8" in line and "lr=2e-05" in line and "batch=4" in line and "max_length=2048" in line, line
    assert "split train/valid/test=0.8/0.1/0.1" in r.stdout and "16 cells" in r.stdout
    assert "nothing trained (--dry-run)" in r.stdout
    assert not list(tmp_path.rglob("train/*/_DONE.json")) and not list(tmp_path.rglob("table1.md"))
