"""The reason stage through the real `openai` client over HTTP to the project's own
OpenAI-compatible server (SmolLM2-135M-Instruct on 127.0.0.1), with injected faults."""
from __future__ import annotations

import json
import logging
import time

import pytest

from bench.reason.config import ReasonConfig
from bench.reason.stage import reason_items
from conftest import free_port, server_stats as stats, set_faults

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def server(openai_server):
    return openai_server


def items(n: int, tag: str) -> list[dict]:
    """Explained items as the explain stage writes them (the reason stage's input)."""
    return [{"system": "smollm2", "dataset": "demo", "qid": f"{tag}{i}", "docid": f"d{i}", "rank": 1,
             "query": f"hourly CO2 measurements from tall towers, site {i}", "url": f"https://example.org/{tag}/{i}",
             "text": f"Hourly carbon dioxide mole fractions measured at tall tower station number {i} in Europe.",
             "status": "ok", "message": "",
             "topk": [{"index": 0, "word": "Hourly", "value": 0.31}, {"index": 2, "word": "dioxide", "value": 0.12}]}
            for i in range(n)]


def config(base: str, **kw) -> ReasonConfig:
    return ReasonConfig(**{"backend": "openai", "model": MODEL, "base_url": base + "/v1", "max_new_tokens": 8,
                           "concurrency": 3, "timeout_s": 15, "backoff_s": 0.05, "max_retries": 6, **kw})


def test_429_500_and_timeouts_still_give_every_item_one_explanation_generated_once(server, tmp_path):
    before = stats(server)
    set_faults(server, ["429", "500", "timeout", "500", "429"])
    out, summary = reason_items(items(3, "f"), config(server), tmp_path / "cache")
    after = stats(server)
    texts = [it["explanations"][v] for it in out for v in ("with", "without")]
    assert all(t["status"] == "ok" and t["text"] for t in texts), texts
    assert summary["ok"] == summary["prompts"] == 6
    assert summary["attempts"] == 6 + 5  # every injected fault cost exactly one retry
    faults = {k: after["faults"].get(k, 0) - before["faults"].get(k, 0) for k in ("429", "500", "timeout")}
    assert faults == {"429": 2, "500": 2, "timeout": 1}
    new_generations = {k: v - before["generations"].get(k, 0) for k, v in after["generations"].items()}
    assert sorted(v for v in new_generations.values() if v) == [1] * 6  # none generated twice
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0 and summary["cost_usd"] == 0.0

    # a re-run is answered from the response cache: no request reaches the server
    out2, summary2 = reason_items(items(3, "f"), config(server), tmp_path / "cache")
    assert stats(server)["requests"] == after["requests"]
    assert summary2["cached"] == 6 and summary2["prompt_tokens"] == 0
    assert [it["explanations"]["with"]["text"] for it in out2] == [it["explanations"]["with"]["text"] for it in out]


def test_malformed_answer_is_marked_and_the_other_items_are_kept(server, tmp_path):
    set_faults(server, ["malformed"])
    out, summary = reason_items(items(2, "m"), config(server, concurrency=1, variants=["with"]), tmp_path / "cache")
    statuses = sorted(it["explanations"]["with"]["status"] for it in out)
    assert statuses == ["malformed", "ok"]
    bad = next(it for it in out if it["explanations"]["with"]["status"] == "malformed")
    assert "no choices" in bad["explanations"]["with"]["message"]
    assert summary["failed"] == {"malformed": 1}


def test_unreachable_endpoint_marks_every_item_with_a_clear_message(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.time()
    out, summary = reason_items(items(2, "u"), config(dead, timeout_s=2), tmp_path / "cache")
    assert time.time() - t0 < 60
    for it in out:
        for v in ("with", "without"):
            e = it["explanations"][v]
            assert e["status"] == "error" and "unreachable" in e["message"] and dead in e["message"]
    assert summary["ok"] == 0 and summary["failed"] == {"error": 4}


def test_api_key_is_never_logged_or_written(server, tmp_path, monkeypatch, caplog):
    secret = "fake-key-DO-NOT-LEAK-4242"  # a made-up key; the test checks it never leaks
    monkeypatch.setenv("RB_TEST_KEY", secret)
    set_faults(server, ["429"])
    with caplog.at_level(logging.DEBUG):
        out, summary = reason_items(items(1, "k"), config(server, api_key_env="RB_TEST_KEY"), tmp_path / "cache")
    assert summary["ok"] == 2
    assert secret not in caplog.text
    assert secret not in json.dumps(out) + json.dumps(summary)
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text()


def test_ctrl_c_stops_sending_the_queued_prompts(server, tmp_path):
    """Ctrl-C during the reason stage: the prompts still queued are never sent (a plain thread pool's
    exit ran every queued request first - each one paid for on GPT-4o - before the interrupt got out)."""
    import signal
    import threading

    n_prompts = 40 * 2
    sent_before = stats(server)["requests"]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background pytest ignores SIGINT

    def press_ctrl_c_after_three_replies():
        deadline = time.time() + 120
        while stats(server)["requests"] - sent_before < 3 and time.time() < deadline:
            time.sleep(0.05)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_after_three_replies, daemon=True)
    try:
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            reason_items(items(n_prompts // 2, "c"), config(server, concurrency=2), tmp_path / "cache")
    finally:
        presser.join(timeout=130)
        signal.signal(signal.SIGINT, previous)
    time.sleep(2)  # the two requests in flight may still land
    sent = stats(server)["requests"] - sent_before
    assert sent <= 3 + 2 + 2, f"{sent} of {n_prompts} prompts were sent (Ctrl-C after 3 replies)"
