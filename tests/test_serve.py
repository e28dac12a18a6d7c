"""The re-rank API, over real HTTP, against `rerank-bench serve` running in its own process.

One server (tiny-qwen2 scorer, SmolLM2-135M-Instruct writing the explanations, bearer token,
small limits) serves every test of this module.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import yaml

from conftest import ROOT, ctrl_c_reaches_python

TOKEN = "s3cret-test-token"
SYSTEM = {"name": "tiny-qwen2-zeroshot", "model": "tiny-qwen2", "prompt": "chat", "batch_size": 8, "max_length": 256}
LIMITS = {"max_candidates": 5, "max_text_chars": 2000, "max_query_chars": 120, "max_top_k": 5,
          "max_explain_candidates": 2, "max_body_bytes": 65536}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_query(n: int = 5, row: int = 0) -> tuple[str, list[dict]]:
    from bench.data.io import read_jsonl
    from bench.data.loaders import demo_path

    rows = [r for _, r in read_jsonl(demo_path())]
    r = rows[row]
    return r["query"], [{"id": it["docid"], "text": f"{it['title']}\n{it['summary']}", "url": it["url"]}
                        for it in r["items"][:n]]


def wait_healthy(proc: subprocess.Popen, base: str, log, limit_s: float = 240) -> bool:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = tmp / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "name": "serve-test", "results_dir": str(tmp / "results"), "data": [{"name": "envri-demo", "loader": "demo"}],
        "ray": {"num_cpus": 2}, "rerank": {"systems": [SYSTEM]},
        "reason": {"backend": "local", "model": "smollm2-135m-instruct", "max_new_tokens": 24},
        "serve": {"port": port, "token_env": "RERANK_TEST_TOKEN", "max_batch_size": 8, "limits": LIMITS,
                  "explain_top_k": 10, "explain_nsamples": 64}}))
    base = f"http://127.0.0.1:{port}"
    # Ray gives a starting node a fixed 30 s to register; on a machine loaded by other work that
    # can run out, so a start that fails that way is retried once.
    for attempt in range(2):
        log = open(tmp / "serve.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "serve", str(config)], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "RERANK_TEST_TOKEN": TOKEN},
                                start_new_session=True, preexec_fn=ctrl_c_reaches_python)
        if wait_healthy(proc, base, log):
            break
        log.seek(0)
        text = log.read()
        log.close()
        if attempt == 1 or "timed out during startup" not in text:
            pytest.fail(f"serve did not become healthy (exit code {proc.returncode}):\n{text[-3000:]}")
    try:
        yield base
    finally:
        # SIGINT = Ctrl-C: the command deletes the app and shuts its private Ray cluster down.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    log_text = (tmp / "serve.log").read_text()
    assert TOKEN not in log_text, "the bearer token must never be logged"


@pytest.fixture(scope="module")
def scorer():
    """The same scorer the server serves, in this process: the reference for its answers."""
    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer

    return build_scorer(ScorerSpec(**SYSTEM))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_api_ranks_as_the_scorer_does_for_concurrent_users(server, scorer):
    """Eight users at once (merged by @serve.batch): each gets its own candidates, scored as in-process."""
    cases = [demo_query(5, row) for row in range(8)]

    async def ask_all():
        async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=120) as client:
            return await asyncio.gather(*[client.post("/rerank", json={"query": q, "candidates": c})
                                          for q, c in cases])

    answers = asyncio.run(ask_all())
    for (query, cands), resp in zip(cases, answers):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == SYSTEM["name"] and body["took_ms"] > 0
        expected = scorer.score([query] * len(cands), [c["text"] for c in cands])
        by_id = {r["id"]: r for r in body["results"]}
        assert sorted(by_id) == sorted(c["id"] for c in cands)
        for c, s in zip(cands, expected):
            assert by_id[c["id"]]["score"] == pytest.approx(float(s), abs=1e-4)
            assert by_id[c["id"]]["url"] == c["url"]
        scores = [r["score"] for r in body["results"]]
        assert [r["rank"] for r in body["results"]] == list(range(1, len(cands) + 1))
        assert scores == sorted(scores, reverse=True)
        assert [r["id"] for r in body["results"]] == [cands[i]["id"] for i in np.argsort(-expected, kind="stable")]
        assert all("attributions" not in r and "explanation" not in r for r in body["results"])


def test_top_k_and_explanations_when_asked(server, scorer):
    query, cands = demo_query(4, row=3)
    cands = [{**c, "text": " ".join(c["text"].split()[:9])} for c in cands]  # 9 words: SHAP sees every word
    resp = httpx.post(f"{server}/rerank", headers=AUTH, timeout=180,
                      json={"query": query, "candidates": cands, "top_k": 3, "explain": True})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 3
    explained = [r for r in results if "attributions" in r]
    assert len(explained) == LIMITS["max_explain_candidates"] and explained == results[:2]
    text_of = {c["id"]: c["text"] for c in cands}
    assert all("attributions" not in r and "explanation" not in r for r in results[2:])
    for r in explained:
        assert isinstance(r["explanation"], str) and len(r["explanation"].split()) >= 3, r  # SmolLM2's text
        words = text_of[r["id"]].split()
        attrs = r["attributions"]
        assert 1 <= len(attrs) <= 10 and all(a["word"] in words for a in attrs)
        # the words that raised the score most come first (evidence for relevance)
        assert [a["value"] for a in attrs] == sorted((a["value"] for a in attrs), reverse=True)
        # KernelSHAP's efficiency: all words' values sum to score(item) - score(no words).
        empty = float(scorer.score([query], [""])[0])
        assert sum(a["value"] for a in attrs) == pytest.approx(r["score"] - empty, abs=2e-3)


BAD_REQUESTS = [
    # (what, body or raw text, status, words the error names)
    ("missing query", {"candidates": [{"id": "a", "text": "t"}]}, 422, "query"),
    ("empty query", {"query": "", "candidates": [{"id": "a", "text": "t"}]}, 422, "query"),
    ("empty candidates", {"query": "q", "candidates": []}, 422, "candidates"),
    ("too many candidates", {"query": "q", "candidates": [{"id": str(i), "text": "t"} for i in range(6)]}, 413,
     "candidates"),
    ("text too long", {"query": "q", "candidates": [{"id": "a", "text": "x" * 2001}]}, 413, "candidates.0.text"),
    ("query too long", {"query": "q" * 121, "candidates": [{"id": "a", "text": "t"}]}, 413, "query"),
    ("query not a string", {"query": 5, "candidates": [{"id": "a", "text": "t"}]}, 422, "query"),
    ("candidates not a list", {"query": "q", "candidates": "a"}, 422, "candidates"),
    ("candidate without text", {"query": "q", "candidates": [{"id": "a"}]}, 422, "candidates.0.text"),
    ("id not a string", {"query": "q", "candidates": [{"id": 1, "text": "t"}]}, 422, "candidates.0.id"),
    ("duplicate ids", {"query": "q", "candidates": [{"id": "a", "text": "t"}, {"id": "a", "text": "u"}]}, 422,
     "unique"),
    ("top_k zero", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "top_k": 0}, 422, "top_k"),
    ("top_k above limit", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "top_k": 6}, 422, "top_k"),
    ("top_k as a string", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "top_k": "3"}, 422, "top_k"),
    ("explain not a bool", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "explain": "yes"}, 422,
     "explain"),
    ("unknown field", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "rerank_all": True}, 422,
     "unknown field"),
    ("body not an object", [1, 2], 422, "body"),
    ("malformed JSON", '{"query": "q", "candidates": [', 400, "JSON"),
    ("body too large", {"query": "q", "candidates": [{"id": "a", "text": "t"}], "pad": "x" * 70_000}, 413, "body"),
]


@pytest.mark.parametrize("what,body,status,names", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_naming_the_problem(server, what, body, status, names):
    content = body if isinstance(body, str) else json.dumps(body)
    resp = httpx.post(f"{server}/rerank", content=content, timeout=30,
                      headers={**AUTH, "content-type": "application/json"})
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and names in detail, detail


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}], ids=["none", "wrong", "basic", "empty"])
@pytest.mark.parametrize("body", [{"query": "q", "candidates": [{"id": "a", "text": "t"}]}, {"bad": 1}],
                         ids=["valid-body", "invalid-body"])
def test_401_without_the_token(server, headers, body):
    """Checked before the body: a caller without the token learns nothing about validation."""
    resp = httpx.post(f"{server}/rerank", headers=headers, timeout=30, json=body)
    assert resp.status_code == 401, resp.text
    assert resp.headers.get("www-authenticate") == "Bearer"


def test_health_and_openapi_docs(server):
    health = httpx.get(f"{server}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok", "model": SYSTEM["name"]}
    spec = httpx.get(f"{server}/openapi.json", timeout=10).json()
    assert {"/rerank", "/healthz"} <= set(spec["paths"])
    assert {"query", "candidates", "top_k", "explain"} <= set(spec["components"]["schemas"]["RerankRequest"]["properties"])
    assert httpx.get(f"{server}/docs", timeout=10).status_code == 200


def test_serve_rejects_bad_config_before_starting(write_config, cli):
    base = {"name": "s", "data": [{"name": "d", "loader": "demo"}], "rerank": {"systems": [SYSTEM]}}
    no_token = write_config({**base, "serve": {"token_env": "RERANK_TEST_UNSET_TOKEN"}})
    r = cli("serve", no_token, env={"RERANK_TEST_UNSET_TOKEN": ""}, timeout=60)
    assert r.returncode == 2 and "RERANK_TEST_UNSET_TOKEN" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    unknown = write_config({**base, "serve": {"system": "nope"}}, name="u.yaml")
    r = cli("serve", unknown, timeout=60)
    assert r.returncode == 2 and "serve.system" in r.stderr and "'nope'" in r.stderr
