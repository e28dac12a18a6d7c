"""Listwise LLM re-rankers (RankGPT sliding window) over the real `openai` client and the project's
fault-injecting OpenAI-compatible server: malformed answers are repaired by the documented rule and
counted; a re-run is answered from the response cache."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import ListwiseSystem
from bench.data.collection import Run
from bench.reason.backends import ResponseCache
from bench.rerank.listwise import parse_permutation, rerank_listwise, windows
from conftest import server_stats, set_faults


@pytest.mark.parametrize("answer, n, order, counts", [
    ("[2] > [3] > [1]", 3, [1, 2, 0], {}),
    ("[2] > [2] > [1]", 3, [1, 0, 2], {"repeated": 1, "missing": 1}),
    ("I think the first passage answers the query best.", 3, [0, 1, 2], {"malformed": True, "missing": 3}),
    ("[7] > [1]", 3, [0, 1, 2], {"out_of_range": 1, "missing": 2}),
    ("3 > 1 > 2", 3, [2, 0, 1], {}),
    (None, 2, [0, 1], {"malformed": True, "missing": 2}),
])
def test_answers_are_repaired_by_the_documented_rule_and_counted(answer, n, order, counts):
    parsed = parse_permutation(answer, n)
    assert parsed.order == order
    for k in ("malformed", "repeated", "missing", "out_of_range"):
        assert getattr(parsed, k) == counts.get(k, 0 if k != "malformed" else False), k


def test_windows_slide_from_the_bottom_to_the_top_and_cover_every_rank():
    assert windows(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40),
                                    (10, 30), (0, 20)]
    for depth, window, step in ((25, 20, 10), (7, 4, 2), (3, 20, 10), (10, 4, 3)):
        spans = windows(depth, window, step)
        assert spans[-1][0] == 0 and spans[0][1] == depth
        assert set().union(*(range(s, e) for s, e in spans)) == set(range(depth))


@given(depth=st.integers(1, 300), window=st.integers(2, 60), data=st.data())
@settings(max_examples=400, deadline=None)
def test_windows_cover_every_position_for_every_length(depth, window, data):
    """Property (issue 18): for every list length L >= 1, window and step <= window, the windows cover
    every position, the first ends at L, the last starts at 0, each is at most `window` long and lies in
    the list. (rank_llm's loop gave no window at all when L == window - step, e.g. 10 with 20 / 10.)"""
    step = data.draw(st.integers(1, window))
    spans = windows(depth, window, step)
    assert spans and spans[0][1] == depth and spans[-1][0] == 0
    assert all(0 <= s < e <= depth and e - s <= window for s, e in spans)
    assert set().union(*(range(s, e) for s, e in spans)) == set(range(depth))
    assert [e for _, e in spans] == sorted((e for _, e in spans), reverse=True)


def test_a_query_with_exactly_window_minus_step_candidates_is_reranked():
    """Depth 10 with window 20 and step 10 used to produce no window: BM25 order, 0 calls, no warning."""
    assert windows(10, 20, 10) == [(0, 10)]


def test_a_listwise_reranker_over_malformed_answers_gives_complete_rankings_and_counts(openai_server, tmp_path):
    queries = {"q1": "ocean heat content", "q2": "soil carbon"}
    items = {f"{q}d{i}": f"passage {i} about {queries[q]}" for q in queries for i in range(6)}
    first = Run("BM25", {q: {f"{q}d{i}": 10.0 - i for i in range(6)} for q in queries})
    cfg = ListwiseSystem(name="rankgpt", kind="listwise", backend="openai", model="smollm2-135m-instruct",
                         base_url=openai_server + "/v1", window=4, step=2, depth=6, concurrency=1, max_retries=3,
                         timeout_s=30)
    # windows per query: (2, 6), (0, 4); requests arrive q1, q2 per round (concurrency 1)
    set_faults(openai_server, ["reply:[2] > [2] > [1]",                         # q1 round 1: repeated + missing
                               "reply:The passages are all about soil carbon.",  # q2 round 1: prose
                               "500",                                            # q1 round 2: retried ...
                               "reply:[4] > [9] > [3] > [2] > [1]",              # ... then out of range
                               "reply:[1] > [2] > [3] > [4]"])                   # q2 round 2: clean
    before = server_stats(openai_server)["requests"]
    cache = ResponseCache(tmp_path / "cache")
    run, stats = rerank_listwise(cfg, cfg.reason_config(), queries, items, first, ["q1", "q2"], cache)
    assert server_stats(openai_server)["requests"] - before == 5
    for q in queries:  # complete rankings: every candidate exactly once
        assert sorted(run.scores[q]) == sorted(first.scores[q])
    # q1: round 1 reorders ranks 3-6 (d2 d3 d4 d5 -> d3 d2, then the missing d4 d5); round 2 the top 4 (d0 d1 d3 d2
    # -> [4] [3] [2] [1] = d2 d3 d1 d0; [9] is out of range)
    assert [d for d, _ in run.ranked("q1")] == ["q1d2", "q1d3", "q1d1", "q1d0", "q1d4", "q1d5"]
    assert (stats["q1"].repeated, stats["q1"].missing, stats["q1"].out_of_range, stats["q1"].malformed) == (1, 2, 1, 0)
    assert (stats["q2"].repeated, stats["q2"].missing, stats["q2"].out_of_range, stats["q2"].malformed) == (0, 4, 0, 1)
    assert [d for d, _ in run.ranked("q2")] == [f"q2d{i}" for i in range(6)]
    assert stats["q1"].calls == stats["q2"].calls == 2

    # a re-run sends no request: every window comes from the response cache
    requests = server_stats(openai_server)["requests"]
    run2, stats2 = rerank_listwise(cfg, cfg.reason_config(), queries, items, first, ["q1", "q2"], cache)
    assert server_stats(openai_server)["requests"] == requests
    assert run2.scores == run.scores and stats2["q1"].cached == 2 and stats2["q1"].prompt_tokens == 0


def test_listwise_rows_join_the_leaderboard_with_their_counts(openai_server, tmp_path, write_config, cli):
    cfg = write_config({"name": "lw", "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 2}],
                        "splits": {"scheme": "none"}, "evaluate": {"measures": ["nDCG@10"]},
                        "rerank": {"systems": [{"name": "RankGPT-SmolLM2", "kind": "listwise", "backend": "openai",
                                                "model": "smollm2-135m-instruct", "base_url": openai_server + "/v1",
                                                "window": 10, "step": 5, "depth": 10, "concurrency": 1}]}})
    set_faults(openai_server, ["reply:[3] > [1] > [2]", "reply:[10] > [9] > [8] > [7] > [6] > [5] > [4] > [3] > [2] > [1]"])
    out = cli("run", cfg, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    board = json.loads((tmp_path / "results" / "lw" / "leaderboard.json").read_text())
    rows = {r["system"]: r for r in board["rows"]}
    assert rows["RankGPT-SmolLM2"]["info"]["kind"] == "listwise" and rows["RankGPT-SmolLM2"]["nDCG@10"] is not None
    totals = board["listwise"]["RankGPT-SmolLM2"]["envri-demo"]["totals"]
    assert totals["calls"] == 2 and totals["missing"] == 7 and totals["queries"] == 2
    assert any(s["system"] == "RankGPT-SmolLM2" for s in board["significance"])
