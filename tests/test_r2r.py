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


def test_softmax_weights_sum_to_one_and_learn():
    objective = Combined(("pair", "list", "gen"), margin=1.0, temperature=1.0, weighting="softmax")
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


def _weights_after(weighting: str, steps: int, lr: float) -> dict[str, float]:
    """Train only the loss weights on three losses of different scales (a satisfied hinge is ~0.4, a KL
    ~2, a reason's token cross-entropy ~8), as the student's optimizer does; the weights at the end."""
    objective = Combined(("pair", "list", "gen"), weighting=weighting)
    opt = torch.optim.Adam(objective.parameters(), lr=lr)
    scores, ranks = torch.tensor([0.4, 0.0]), torch.tensor([1, 2])  # hinge 1 - 0.4 = 0.6, KL ~0.07
    logs = {}
    for _ in range(steps):
        total, logs = objective(scores, ranks, generation=torch.tensor(8.0))
        opt.zero_grad()
        total.backward()
        opt.step()
    return {t: logs[f"weight_{t}"] for t in ("pair", "list", "gen")}


def test_r2r_loss_weights_do_not_collapse_with_losses_of_different_scales():
    """Issue 18: with (a, b, c) = softmax(w) and nothing else, the gradient moves all weight onto the
    smallest loss - the reasons' generation loss (the largest) is switched off. Uncertainty weighting
    (Kendall et al. 2018) keeps every weight: each tends to 1 / its loss, so every term keeps a share.
    Checked at the run's own scale (8 steps at lr 1e-3: the weights barely move) and far beyond it
    (400 steps at lr 0.05), where the softmax weights collapse and these do not."""
    run = _weights_after("uncertainty", steps=8, lr=1e-3)
    assert min(run.values()) > 0.95
    long = _weights_after("uncertainty", steps=400, lr=0.05)
    assert long["gen"] == pytest.approx(1 / 8, rel=0.15) and long["pair"] == pytest.approx(1 / 0.6, rel=0.15)
    assert min(long.values()) > 0.1
    collapsed = _weights_after("softmax", steps=400, lr=0.05)
    assert collapsed["gen"] < 1e-3, collapsed  # the old formulation switches the reasons off


def test_fixed_r2r_weights_are_the_configured_ones():
    objective = Combined(("pair", "list", "gen"), weighting="fixed", fixed=(0.5, 0.25, 2.0))
    total, logs = objective(torch.tensor([0.4, 0.0]), torch.tensor([1, 2]), generation=torch.tensor(8.0))
    assert total.item() == pytest.approx(0.5 * 0.6 + 0.25 * logs["loss_list"] + 2.0 * 8.0, rel=1e-6)
    assert list(objective.parameters()) == []


def test_the_separate_prompt_teacher_ranks_and_explains_with_a_fallback_and_a_cache(openai_server, tmp_path):
    from bench.data.collection import Run
    from bench.r2r.config import TeacherConfig
    from bench.r2r.teacher import teach
    from bench.reason.backends import ResponseCache
    from conftest import server_stats, set_faults

    queries = {"q1": "ocean heat", "q2": "soil carbon"}
    items = {f"{q}d{i}": f"document {i} on {t}" for q, t in queries.items() for i in range(3)}
    first = Run("BM25", {q: {f"{q}d{i}": 3.0 - i for i in range(3)} for q in queries})
    cfg = TeacherConfig(backend="openai", model="smollm2-135m-instruct", base_url=openai_server + "/v1", depth=3,
                        concurrency=1, max_retries=2, prompt="separate")
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
    usage = summary["usage_by_type"]  # every call measured: 2 ranking calls, 6 direct and 4 comparative reasons
    assert [(usage[t]["calls"], usage[t]["estimated"]) for t in ("ranking", "direct", "comparative")] == \
        [(2, False), (6, False), (4, False)]
    assert usage["ranking"]["completion_tokens"] == len("[3] > [1] > [2]".split()) + len("All three are fine.".split())
    assert usage["direct"]["completion_tokens"] + usage["comparative"]["completion_tokens"] == 2 * 10
    requests = server_stats(openai_server)["requests"]
    again, summary2 = teach(cfg, queries, items, first, ["q1", "q2"], cache)  # every answer from the cache
    assert server_stats(openai_server)["requests"] == requests and [t.direct for t in again] == [t.direct for t in lists]


@pytest.mark.parametrize("answer, n, order, counts", [
    # clean, in code fences with words around it: the ranking, the keywords and both kinds of reasons
    ('Here it is:\n```json\n{"keywords": ["ocean", "heat"], "ranked_passages": ['
     '{"identifier": 3, "direct_reason": "gives heat content", "comparative_reason": "more complete than [1]"}, '
     '{"identifier": 1, "direct_reason": "mentions heat", "comparative_reason": "beats [2]"}, '
     '{"identifier": 2, "direct_reason": "off topic", "comparative_reason": ""}]}\n```', 3, [2, 0, 1],
     {"keywords": ["ocean", "heat"], "direct": {2: "gives heat content", 0: "mentions heat", 1: "off topic"},
      "comparative": {(2, 0): "more complete than [1]", (0, 1): "beats [2]"}}),
    # repeated (first entry counts), out of range and unreadable identifiers, string identifiers, a missing reason
    ('{"ranked_passages": [{"identifier": "[2]", "direct_reason": "a", "comparative_reason": "b"}, '
     '{"identifier": 2, "direct_reason": "dup"}, {"identifier": 9, "direct_reason": "x"}, {"identifier": "two"}, '
     '{"identifier": 1, "direct_reason": " ", "comparative_reason": "c"}]}', 3, [1, 0, 2],
     {"repeated": 1, "out_of_range": 2, "missing": 1, "direct": {1: "a"}, "comparative": {(1, 0): "b"},
      "missing_reasons": 1}),
    # cut off mid-answer (invalid JSON): the ranking from its "identifier" fields, no reasons
    ('{"ranked_passages": [{"identifier": 2, "direct_reason": "about 2019 data"}, {"identifier": 3, "direc', 3,
     [1, 2, 0], {"parse_error": "invalid JSON", "missing": 1}),
    # prose with RankGPT marks: the ranking from the [n] marks
    ("I would put [3] first, then [1].", 3, [2, 0, 1], {"parse_error": "no JSON object", "missing": 1}),
    # nothing usable: the window keeps its order
    ("All passages look relevant.", 3, [0, 1, 2], {"parse_error": "no JSON object", "malformed": True, "missing": 3}),
    ('{"keywords": ["x"]}', 2, [0, 1], {"parse_error": "JSON without a 'ranked_passages' list", "malformed": True,
                                      "missing": 2}),
])
def test_json_answers_are_repaired_by_the_documented_rule_and_counted(answer, n, order, counts):
    from bench.r2r.answers import parse_reasoning_answer

    ans = parse_reasoning_answer(answer, n)
    assert ans.order == order
    assert ans.parse_error.startswith(counts.get("parse_error", "")) and bool(ans.parse_error) == ("parse_error" in counts)
    for k in ("repeated", "missing", "out_of_range", "missing_reasons"):
        assert getattr(ans, k) == counts.get(k, 0), k
    assert ans.malformed == counts.get("malformed", False)
    for k in ("keywords", "direct", "comparative"):
        if k in counts:
            assert getattr(ans, k) == counts[k], k


def test_the_json_teacher_gives_one_answer_per_query_repairs_it_and_falls_back_to_separate_prompts(openai_server,
                                                                                                   tmp_path):
    """R2R's single-call teacher over the real openai client: one JSON answer per query (sampled with R2R's
    temperature 1.0 / top-p 0.9), repaired and counted; an unparseable answer's reasons come from the separate
    prompts; the tokens are split by reasoning type; a re-run sends nothing."""
    from bench.data.collection import Run
    from bench.r2r.config import TeacherConfig
    from bench.r2r.teacher import teach
    from bench.reason.backends import ResponseCache
    from conftest import server_stats, set_faults

    queries = {"q1": "ocean heat", "q2": "soil carbon", "q3": "sea ice"}
    items = {f"{q}d{i}": f"document {i} on {t}" for q, t in queries.items() for i in range(3)}
    first = Run("BM25", {q: {f"{q}d{i}": 3.0 - i for i in range(3)} for q in queries})
    cfg = TeacherConfig(backend="openai", model="smollm2-135m-instruct", base_url=openai_server + "/v1", depth=3,
                        concurrency=1, max_retries=2)
    assert (cfg.prompt, cfg.temperature, cfg.top_p) == ("json", 1.0, 0.9)  # R2R's teacher by default
    q1 = ('{"keywords": ["ocean", "heat"], "ranked_passages": [{"identifier": 3, "direct_reason": "heat content '
          'profiles", "comparative_reason": "more specific than the next"}, {"identifier": 1, "direct_reason": '
          '"mentions the ocean", "comparative_reason": "closer to the query"}, {"identifier": 2, "direct_reason": '
          '"off topic", "comparative_reason": ""}]}')
    q2 = ('{"ranked_passages": [{"identifier": 2, "direct_reason": "a", "comparative_reason": "b"}, '
          '{"identifier": "[2]", "direct_reason": "dup"}, {"identifier": 1, "direct_reason": ""}]}')
    fallback = [f"separate reason {i}" for i in range(5)]  # q3: 3 direct, then 2 comparative
    set_faults(openai_server, [f"reply:{q1}", f"reply:{q2}", "reply:All three are fine.",
                               *[f"reply:{t}" for t in fallback]])
    before = server_stats(openai_server)
    cache = ResponseCache(tmp_path / "cache")
    lists, summary = teach(cfg, queries, items, first, ["q1", "q2", "q3"], cache)
    after = server_stats(openai_server)
    assert after["requests"] - before["requests"] == 8
    assert after["sampling"].get("temperature=1 top_p=0.9", 0) - before["sampling"].get("temperature=1 top_p=0.9", 0) == 8
    a, b, c = lists
    assert a.docids == ["q1d2", "q1d0", "q1d1"] and a.ranking == "teacher" and a.keywords == ["ocean", "heat"]
    assert a.direct == {"q1d2": "heat content profiles", "q1d0": "mentions the ocean", "q1d1": "off topic"}
    assert a.compare == [{"higher": "q1d2", "lower": "q1d0", "text": "more specific than the next"},
                         {"higher": "q1d0", "lower": "q1d1", "text": "closer to the query"}]
    assert b.docids == ["q2d1", "q2d0", "q2d2"] and b.counts["repeated"] == 1 and b.counts["missing"] == 1
    assert b.direct == {"q2d1": "a"} and b.compare == [{"higher": "q2d1", "lower": "q2d0", "text": "b"}]
    assert c.docids == ["q3d0", "q3d1", "q3d2"] and c.ranking.startswith("fallback: the teacher's answer named no")
    assert c.counts["parse_error"] == "no JSON object in the answer"
    assert sorted(c.direct.values()) == fallback[:3] and [x["text"] for x in c.compare] == fallback[3:]
    assert (summary["json_parse_errors"], summary["reasons_from_fallback"], summary["missing_reasons"]) == (1, 5, 1)
    assert summary["reasons_ok"] == 5 + 2 + 5 and summary["reason_prompts"] == 3 * 5
    usage = summary["usage_by_type"]
    assert (usage["ranking"]["calls"], usage["direct"]["calls"], usage["comparative"]["calls"]) == (3, 3, 2)
    # the scripted server reports 1 input token and one output token per word of every answer
    words = [len(t.split()) for t in (q1, q2, "All three are fine.", *fallback)]
    assert sum(u["completion_tokens"] for u in usage.values()) == pytest.approx(sum(words), abs=0.2)
    assert sum(u["prompt_tokens"] for u in usage.values()) == 8
    assert usage["direct"]["estimated"] and usage["direct"]["completion_tokens"] > sum(words[3:6])  # + a JSON share
    requests = server_stats(openai_server)["requests"]
    again, summary2 = teach(cfg, queries, items, first, ["q1", "q2", "q3"], cache)  # every answer from the cache
    assert server_stats(openai_server)["requests"] == requests
    assert [t.direct for t in again] == [t.direct for t in lists] and summary2["usage_by_type"] == usage


def json_answer(order: list[int], tag: str) -> str:
    """A teacher's JSON answer (R2R's single-call prompt) ranking the window as `order`, with its reasons."""
    return json.dumps({"keywords": ["carbon", tag], "ranked_passages": [
        {"identifier": i, "direct_reason": f"passage {i} reports measurements the query asks for ({tag})",
         "comparative_reason": f"more specific than the passage after it ({tag})" if k + 1 < len(order) else ""}
        for k, i in enumerate(order)]})


def test_the_r2r_flow_trains_five_students_and_writes_the_r2r_tables(openai_server, tmp_path, write_config, cli):
    """The teacher answers R2R's single-call prompt through the fault-injecting OpenAI-compatible server with
    scripted answers (one JSON answer per query for the 6 queries, one of them cut off: its 7 reasons come from
    the separate prompts), so the flow runs in a minute; tiny students. Two listwise re-rankers - RankGPT's
    plain prompt and R2R's reasoning prompt - rank the test queries: R2R Table 5. The teacher's tokens per
    reasoning type: the cost table."""
    from conftest import set_faults

    teacher = ['reply:{"keywords": ["co2"], "ranked_passages": [{"identifier": 2, "direct_reason": "cut off',
               *[f"reply:{json_answer([2, 1, 4, 3], f'q{i}')}" for i in range(1, 6)]]
    fallback = [f"reply:This document reports measurements relevant to the query, reason {i}." for i in range(7)]
    plain = ["reply:[2] > [1] > [4] > [3]"] * 3
    reasoning = [f"reply:{json_answer([3, 1, 2, 4], 't1')}", "reply:I cannot decide.",
                 f"reply:{json_answer([1, 2, 3, 4], 't3')}"]
    set_faults(openai_server, teacher + fallback + plain + reasoning)
    variants = ["r2r-pairwise", "r2r-listwise", "r2r-direct", "r2r-compare", "r2r-full"]
    listwise = {"kind": "listwise", "backend": "openai", "model": "smollm2-135m-instruct",
                "base_url": openai_server + "/v1", "window": 4, "step": 2, "depth": 4, "concurrency": 1}
    cfg = write_config({
        "name": "r2r", "seed": 3, "ray": {"num_cpus": 2},
        "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 10}],
        "splits": {"scheme": "random", "train": 0.5, "valid": 0.2, "test": 0.3},
        "rerank": {"systems": [{"name": "RankGPT-plain", **listwise},
                               {"name": "RankGPT-reasoning", "prompt": "reasoning", "max_new_tokens": 400,
                                **listwise}]},
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
    assert t1["columns"] == ["system", "nDCG@5", "nDCG@10"] and len(t1["rows"]) == 8  # BM25, 2 listwise, 5 variants
    t3 = json.loads((root / "r2r_table3.json").read_text())["table"]
    assert t3["columns"][:4] == ["system", "n", "BLEU", "ROUGE-L"] and len(t3["rows"]) == 5
    assert "teacher done" in out.stderr and (root / "r2r_table1.tex").is_file()
    summary = json.loads(next((root / "teacher").glob("*/summary.json")).read_text())
    assert summary["prompt"] == "json" and summary["fallbacks"] == 0 and summary["reasons_ok"] == 42, summary
    assert summary["json_parse_errors"] == 1 and summary["reasons_from_fallback"] == 7, summary
    assert all(r[1] == 4 for r in t3["rows"])  # four reference (query, document) pairs, each student wrote a reason
    t3md = (root / "r2r_table3.md").read_text()
    assert re.search(r"\|\s+4 \|", t3md) and "4.0000" not in t3md, t3md  # the count prints as a count

    # R2R Table 5: BM25, then each listwise system with its prompt; the reasoning answers' parse errors counted
    t5 = json.loads((root / "r2r_table5.json").read_text())["table"]
    assert t5["columns"] == ["system", "teacher", "prompt", "nDCG@5", "nDCG@10", "JSON parse errors / calls"]
    rows5 = {r[0]: r for r in t5["rows"]}
    assert list(rows5) == ["BM25", "RankGPT-plain", "RankGPT-reasoning"]
    assert rows5["RankGPT-plain"][2].startswith("RankGPT") and rows5["RankGPT-reasoning"][2].startswith("R2R reasoning")
    assert rows5["RankGPT-plain"][5] == "–" and rows5["RankGPT-reasoning"][5] == "1/3"
    for name in ("RankGPT-plain", "RankGPT-reasoning"):  # Table 5's scores are the leaderboard's
        assert float(rows5[name][4].rstrip("†⚠")) == pytest.approx(board[name]["nDCG@10"], abs=5e-5)
    # a listwise system whose ids were mostly placed by the repair rule is flagged, in Table 5 as everywhere
    doc = json.loads((root / "leaderboard.json").read_text())
    flagged = {f["system"] for f in doc["flags"] if f["symbol"] == "⚠"}
    for name in ("RankGPT-plain", "RankGPT-reasoning"):
        totals = next(iter(doc["listwise"][name].values()))["totals"]
        assert (name in flagged) == (totals["unranked"] / totals["ids"] > 0.2), (name, totals)
        assert ("⚠" in rows5[name][4]) == (name in flagged)
    assert "R2R Table 5" in (root / "r2r_table5.md").read_text()

    # the cost table: per query, the teacher's calls and tokens by reasoning type (6 queries: 6 JSON calls and the
    # cut-off answer's 4 direct + 3 comparative separate calls; the scripted server reports 1 input token per call
    # and 1 output token per word)
    cost = json.loads((root / "r2r_cost.json").read_text())
    rows = {r[0]: dict(zip(cost["tables"]["envri-demo"]["columns"][1:], r[1:]))
            for r in cost["tables"]["envri-demo"]["rows"]}
    ranking, direct, comparative, total = (next(v for k, v in rows.items() if k.startswith(t))
                                           for t in ("ranking", "direct", "comparative", "all"))
    assert (ranking["calls / query"], direct["calls / query"], comparative["calls / query"]) == \
        pytest.approx((1.0, 4 / 6, 3 / 6))
    words = sum(len(t[len("reply:"):].split()) for t in teacher + fallback)
    assert total["output tokens / query"] == pytest.approx(words / 6, abs=0.01)
    assert total["input tokens / query"] == pytest.approx(13 / 6)
    assert total["USD / query"] == 0.0  # a local endpoint: no token price
    assert total["USD / query at reference price"] == pytest.approx((13 * 2.5 + words * 10.0) / 1e6 / 6, rel=1e-3)
    assert "estimated" not in total["basis"] and "share" in direct["basis"]
    assert "per-reasoning-type cost" in (root / "r2r_cost.md").read_text()
