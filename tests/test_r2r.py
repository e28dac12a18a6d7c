"""Reason-to-Rank: the losses against hand computations, the teacher over the real `openai` client and
the project's fault-injecting server (scripted answers, a fallback, the response cache), and the
whole flow - teacher, five student variants through Ray Train, leaderboard, R2R Tables 1 and 3."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

from bench.r2r.losses import Combined, LearnedWeights, ListwiseKL, PairwiseHinge


def test_pairwise_hinge_with_margin_matches_a_hand_computation():
    # teacher order 0 > 1 > 2; pairs (0,1): max(0, 1 - 1.5) = 0, (0,2): max(0, 1 - 1.0) = 0, (1,2): max(0, 1 + 0.5)
    loss = PairwiseHinge(margin=1.0)(torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1, 2, 3]))
    assert loss.item() == pytest.approx((0 + 0 + 1.5) / 3)
    assert PairwiseHinge(2.0)(torch.tensor([3.0, 0.0]), torch.tensor([1, 2])).item() == 0.0  # beyond the margin


def test_listwise_kl_matches_a_hand_computation():
    z = 1 + math.exp(-1) + math.exp(-2)
    q = [1 / z, math.exp(-1) / z, math.exp(-2) / z]  # the teacher's ranks 1, 2, 3 with tau = 1
    p = [1 / 3] * 3  # equal student scores
    expected = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))
    loss = ListwiseKL(1.0)(torch.zeros(3), torch.tensor([1, 2, 3]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert ListwiseKL(1.0)(torch.tensor([0.0, -1.0, -2.0]), torch.tensor([1, 2, 3])).item() == pytest.approx(0, abs=1e-6)


def test_learnable_weights_sum_to_one_and_learn():
    objective = Combined(("pair", "list", "gen"), margin=1.0, temperature=1.0)
    w = objective.weights()
    assert w.sum().item() == pytest.approx(1.0) and torch.all(w > 0)
    opt = torch.optim.SGD(objective.parameters(), lr=1.0)
    loss, logs = objective(torch.tensor([0.0, 1.0]), torch.tensor([1, 2]), generation=torch.tensor(5.0))
    loss.backward()
    opt.step()
    w2 = objective.weights()
    assert w2.sum().item() == pytest.approx(1.0) and not torch.allclose(w, w2)
    assert set(logs) == {"loss_pair", "loss_list", "loss_gen", "weight_pair", "weight_list", "weight_gen"}
    assert Combined(("pair",))(torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1, 2, 3]))[0].item() == pytest.approx(0.5)
    assert isinstance(LearnedWeights(3)(), torch.Tensor)


def test_the_teacher_ranks_and_explains_with_a_fallback_and_a_cache(openai_server, tmp_path):
    from bench.data.collection import Run
    from bench.r2r.config import TeacherConfig
    from bench.r2r.teacher import teach
    from bench.reason.backends import ResponseCache
    from conftest import server_stats, set_faults

    queries = {"q1": "ocean heat", "q2": "soil carbon"}
    items = {f"{q}d{i}": f"document {i} on {t}" for q, t in queries.items() for i in range(3)}
    first = Run("BM25", {q: {f"{q}d{i}": 3.0 - i for i in range(3)} for q in queries})
    cfg = TeacherConfig(backend="openai", model="smollm2-135m-instruct", base_url=openai_server + "/v1", depth=3,
                        concurrency=1, max_retries=2)
    # ranking round: q1 answers a permutation, q2 prose (fallback); then 2 x (3 direct + 2 comparative) reasons
    set_faults(openai_server, ["reply:[3] > [1] > [2]", "reply:All three are fine.",
                               *[f"reply:reason {i}" for i in range(10)]])
    before = server_stats(openai_server)["requests"]
    cache = ResponseCache(tmp_path / "cache")
    lists, summary = teach(cfg, queries, items, first, ["q1", "q2"], cache)
    assert server_stats(openai_server)["requests"] - before == 12
    q1, q2 = lists
    assert q1.docids == ["q1d2", "q1d0", "q1d1"] and q1.ranking == "teacher"
    assert q2.docids == ["q2d0", "q2d1", "q2d2"] and q2.ranking.startswith("fallback: the teacher's answer named no")
    assert len(q1.direct) == 3 and [(c["higher"], c["lower"]) for c in q1.compare] == [("q1d2", "q1d0"), ("q1d0", "q1d1")]
    assert summary["fallbacks"] == 1 and summary["reasons_ok"] == 10 and summary["ranking_malformed"] == 1
    requests = server_stats(openai_server)["requests"]
    again, summary2 = teach(cfg, queries, items, first, ["q1", "q2"], cache)  # every answer from the cache
    assert server_stats(openai_server)["requests"] == requests and [t.direct for t in again] == [t.direct for t in lists]


def test_the_r2r_flow_trains_five_students_and_writes_the_r2r_tables(openai_server, tmp_path, write_config, cli):
    """The teacher answers through the fault-injecting OpenAI-compatible server with scripted answers
    (rankings for the 6 queries, then 42 reasons), so the flow runs in a minute; tiny students."""
    from conftest import set_faults

    set_faults(openai_server, ["reply:[2] > [1] > [4] > [3]"] * 6 +
               [f"reply:This document reports measurements relevant to the query, reason {i}." for i in range(42)])
    variants = ["r2r-pairwise", "r2r-listwise", "r2r-direct", "r2r-compare", "r2r-full"]
    cfg = write_config({
        "name": "r2r", "seed": 3, "ray": {"num_cpus": 2},
        "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 10}],
        "splits": {"scheme": "random", "train": 0.5, "valid": 0.2, "test": 0.3},
        "evaluate": {"measures": ["nDCG@5", "nDCG@10"], "split": "test"},
        "train": {"models": [{"model": "tiny-qwen2"}], "methods": variants, "max_concurrent_cells": 2,
                  "hyper": {"max_steps": 2, "batch_size": 2, "max_length": 160, "lr": 0.002, "lora_r": 4,
                            "lora_alpha": 8, "logging_steps": 1, "save_steps": 1}},
        "r2r": {"teacher": {"backend": "openai", "model": "smollm2-135m-instruct", "base_url": openai_server + "/v1",
                            "depth": 4, "max_new_tokens": 24, "concurrency": 1},
                "reference_queries": 1, "student_tokens": 8},
    })
    out = cli("run", cfg, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    root = tmp_path / "results" / "r2r"
    cells = {c["method"]: c for c in json.loads((root / "table1.json").read_text())["cells"]}
    assert sorted(cells) == sorted(variants) and all(c["status"] == "ok" for c in cells.values()), cells
    board = {r["system"]: r for r in json.loads((root / "leaderboard.json").read_text())["rows"]}
    for v in variants:
        assert board[f"tiny-qwen2-{v}"]["nDCG@10"] is not None
    t1 = json.loads((root / "r2r_table1.json").read_text())["table"]
    assert t1["columns"] == ["system", "nDCG@5", "nDCG@10"] and len(t1["rows"]) == 6  # BM25 + five variants
    t3 = json.loads((root / "r2r_table3.json").read_text())["table"]
    assert t3["columns"][:4] == ["system", "n", "BLEU", "ROUGE-L"] and len(t3["rows"]) == 5
    assert "teacher done" in out.stderr and (root / "r2r_table1.tex").is_file()
    summary = json.loads(next((root / "teacher").glob("*/summary.json")).read_text())
    assert summary["fallbacks"] == 0 and summary["reasons_ok"] == 42, summary
    assert all(r[1] == 4 for r in t3["rows"])  # four reference (query, document) pairs, each student wrote a reason
    t3md = (root / "r2r_table3.md").read_text()
    assert re.search(r"\|\s+4 \|", t3md) and "4.0000" not in t3md, t3md  # the count prints as a count
