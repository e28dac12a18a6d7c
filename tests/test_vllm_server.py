"""A real `vllm serve` (vLLM's OpenAI-compatible server, CPU build in .venv-vllm) serving
SmolLM2-135M-Instruct on 127.0.0.1: the harness's openai backend writes explanations through it,
and its next-token log-probabilities cross-check the relevance-token scorer (issue 10)."""
from __future__ import annotations

import socket
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.reason.config import ReasonConfig
from bench.reason.stage import reason_items
from bench.reason.vllm_server import start_server, stop_server, vllm_python, wait_ready

pytestmark = pytest.mark.skipif(vllm_python() is None,
                                reason=".venv-vllm not built (run `make vllm-env`; .ci/run builds it)")

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One float32 server for the module (float32: the cross-check below compares to 1e-3)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    proc = start_server(MODEL, MODEL, port, log, dtype="float32")
    try:
        wait_ready(proc, port, log, limit_s=600)
        yield {"port": port, "log": log, "proc": proc}
    finally:
        stop_server(proc)
    assert proc.poll() is not None


def test_vllm_server_writes_explanations_through_the_openai_backend(server, tmp_path):
    items = [{"system": "smollm2", "dataset": "demo", "qid": "q1", "docid": "d1", "rank": 1,
              "query": "hourly CO2 mole fractions from European tall towers",
              "url": "https://example.org/icos/tall-towers",
              "text": "Hourly carbon dioxide mole fractions measured at European tall tower stations.",
              "status": "ok", "topk": [{"index": 0, "word": "Hourly", "value": 0.4},
                                       {"index": 1, "word": "carbon", "value": 0.2}]}]
    cfg = ReasonConfig(backend="openai", model=MODEL, base_url=f"http://127.0.0.1:{server['port']}/v1",
                       max_new_tokens=24, timeout_s=300, max_retries=2)
    out, summary = reason_items(items, cfg, tmp_path / "cache")
    assert summary["ok"] == 2, (out, Path(server["log"]).read_text()[-2000:])
    for v in ("with", "without"):
        e = out[0]["explanations"][v]
        assert e["status"] == "ok" and len(e["text"].split()) >= 3
        assert e["completion_tokens"] > 0 and e["prompt_tokens"] > 50


def vllm_log_odds(port: int, prompt_ids: list[int], yes: int, no: int) -> float:
    """log P(yes | prompt) - log P(no | prompt) as vLLM reports them: the prompt followed by each
    answer token, echoed with its log-probability (OpenAI completions `echo` + `logprobs`)."""
    logprobs = []
    for answer in (yes, no):
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=120,
                       json={"model": MODEL, "prompt": prompt_ids + [answer], "max_tokens": 1, "echo": True,
                             "logprobs": 0, "temperature": 0})
        r.raise_for_status()
        logprobs.append(r.json()["choices"][0]["logprobs"]["token_logprobs"][len(prompt_ids)])
    return logprobs[0] - logprobs[1]


def test_the_relevance_neuron_equals_vllms_answer_log_odds_on_dl19(server, shared_data):
    """The scorer's single neuron, logit('yes') - logit('no') at the answer position, is the log-odds
    of the same two tokens that vLLM - an implementation this project did not write - reports for the
    next token after the same prompt. 50 DL19 (query, passage) pairs, SmolLM2-135M-Instruct, both
    sides in float32: measured max difference 3.6e-5 here, so 1e-3 is a margin for other CPUs and
    kernels. (With vLLM in bfloat16 the same pairs differ by up to 0.25: bf16 keeps 8 bits.) Both
    rankings of each query agree wherever the scores differ by more than that tolerance."""
    from bench.config import ScorerSpec, TrecDLSource
    from bench.data.loaders import load_trec_dl
    from bench.rerank.scorers import build_scorer

    dl = shared_data / "trec-dl"
    col = load_trec_dl(TrecDLSource(name="dl19", loader="trec-dl", candidates=dl / "bm25-top100-dl19.json",
                                    qrels=dl / "qrels.dl19-passage.txt"))
    pairs = [(q, d) for q in sorted(col.queries)[:5] for d, _ in col.candidates.ranked(q, 10)]
    scorer = build_scorer(ScorerSpec(name="s", model=MODEL, batch_size=8, dtype="float32"))
    queries, texts = [col.queries[q] for q, _ in pairs], [col.corpus[d].full_text() for _, d in pairs]
    ours = scorer.score(queries, texts)
    theirs = np.array([vllm_log_odds(server["port"], scorer.tokenizer(scorer.fit(q, t).input,
                                                                      add_special_tokens=False)["input_ids"],
                                     scorer.pos_id, scorer.neg_id) for q, t in zip(queries, texts)])
    tolerance = 1e-3
    assert len(pairs) == 50 and np.abs(ours - theirs).max() < tolerance, np.abs(ours - theirs).max()
    for start in range(0, 50, 10):  # per query: the two rankings agree beyond the tolerance
        a, b = ours[start:start + 10], theirs[start:start + 10]
        for i in range(10):
            for j in range(10):
                if a[i] - a[j] > 2 * tolerance:
                    assert b[i] > b[j], (start, i, j, a[i], a[j], b[i], b[j])
