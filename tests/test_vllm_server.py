"""A real `vllm serve` (vLLM's OpenAI-compatible server, CPU build in .venv-vllm) serving
SmolLM2-135M-Instruct on 127.0.0.1, with the harness's openai backend writing explanations."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench.reason.config import ReasonConfig
from bench.reason.stage import reason_items
from bench.reason.vllm_server import start_server, stop_server, vllm_python, wait_ready

pytestmark = pytest.mark.skipif(vllm_python() is None,
                                reason=".venv-vllm not built (run `make vllm-env`; .ci/run builds it)")


def test_vllm_server_writes_explanations_through_the_openai_backend(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "vllm.log"
    proc = start_server("smollm2-135m-instruct", "smollm2-135m-instruct", port, log)
    try:
        wait_ready(proc, port, log, limit_s=600)
        items = [{"system": "smollm2", "dataset": "demo", "qid": "q1", "docid": "d1", "rank": 1,
                  "query": "hourly CO2 mole fractions from European tall towers",
                  "url": "https://example.org/icos/tall-towers",
                  "text": "Hourly carbon dioxide mole fractions measured at European tall tower stations.",
                  "status": "ok", "topk": [{"index": 0, "word": "Hourly", "value": 0.4},
                                           {"index": 1, "word": "carbon", "value": 0.2}]}]
        cfg = ReasonConfig(backend="openai", model="smollm2-135m-instruct", base_url=f"http://127.0.0.1:{port}/v1",
                           max_new_tokens=24, timeout_s=300, max_retries=2)
        out, summary = reason_items(items, cfg, tmp_path / "cache")
        assert summary["ok"] == 2, (out, Path(log).read_text()[-2000:])
        for v in ("with", "without"):
            e = out[0]["explanations"][v]
            assert e["status"] == "ok" and len(e["text"].split()) >= 3
            assert e["completion_tokens"] > 0 and e["prompt_tokens"] > 50
    finally:
        stop_server(proc)
    assert proc.poll() is not None
