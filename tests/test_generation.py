"""Generation settings (the paper writes explanations with beam search 4 and temperature 0.5): each backend
honours what it can, a setting it cannot honour is a one-line input error, and the settings are part of the
response-cache key and of the recorded provenance."""
from __future__ import annotations

import pytest

from bench.reason.config import ReasonConfig
from bench.reason.stage import reason_items
from conftest import server_stats, set_faults


def items(n: int, tag: str) -> list[dict]:
    return [{"system": "s", "dataset": "demo", "qid": f"{tag}{i}", "docid": f"d{i}", "rank": 1,
             "query": f"ocean heat content site {i}", "url": "", "text": f"Sea temperature profiles from floats {i}.",
             "status": "ok", "message": "", "topk": [{"index": 0, "word": "Sea", "value": 0.2}]} for i in range(n)]


def test_temperature_and_top_p_reach_an_openai_endpoint_and_change_the_cache_key(openai_server, tmp_path):
    base = dict(backend="openai", model="smollm2-135m-instruct", base_url=openai_server + "/v1", max_new_tokens=8,
                concurrency=1, variants=["with"])
    set_faults(openai_server, [f"reply:explanation {i}" for i in range(4)])
    before = server_stats(openai_server)
    out, summary = reason_items(items(2, "g"), ReasonConfig(**base, temperature=0.5, top_p=0.9), tmp_path / "c")
    after = server_stats(openai_server)
    sent = {k: v - before["sampling"].get(k, 0) for k, v in after["sampling"].items()}
    assert sent.get("temperature=0.5 top_p=0.9") == 2, after["sampling"]  # what the HTTP requests carried
    assert summary["decoding"] == {"max_new_tokens": 8, "temperature": 0.5, "top_p": 0.9, "num_beams": 1}
    assert all(it["explanations"]["with"]["status"] == "ok" for it in out)
    # the same prompts with other sampling settings are not answered from the cache: two new requests
    _, greedy = reason_items(items(2, "g"), ReasonConfig(**base), tmp_path / "c")
    assert server_stats(openai_server)["requests"] - after["requests"] == 2 and greedy["cached"] == 0
    # and the same settings again are: no request
    requests = server_stats(openai_server)["requests"]
    _, again = reason_items(items(2, "g"), ReasonConfig(**base, temperature=0.5, top_p=0.9), tmp_path / "c")
    assert server_stats(openai_server)["requests"] == requests and again["cached"] == 2


def test_the_local_backend_decodes_with_beam_search(tmp_path):
    """With temperature 0 only beam search can change the answer: 4 beams differ from greedy (so num_beams
    reached transformers' generate), and decode the same way every time."""
    from bench.reason.backends import LocalGenerator

    msgs = [[{"role": "user", "content": f"Explain why dataset {i} about ocean heat is relevant."}] for i in range(3)]
    gen = LocalGenerator("tiny-llama")
    beams = [o["text"] for o in gen.generate(msgs, 10, 0.0, num_beams=4)]
    greedy = [o["text"] for o in gen.generate(msgs, 10, 0.0)]
    assert beams != greedy
    assert [o["text"] for o in gen.generate(msgs, 10, 0.0, num_beams=4)] == beams
    # through the reason stage: decoding recorded, and a beam-search answer is cached apart from a greedy one
    cfg = ReasonConfig(backend="local", model="tiny-llama", max_new_tokens=10, variants=["without"], num_beams=4,
                       temperature=0.5)
    _, summary = reason_items(items(2, "b"), cfg, tmp_path / "c")
    assert summary["decoding"]["num_beams"] == 4 and summary["cached"] == 0
    _, greedy_summary = reason_items(items(2, "b"), cfg.model_copy(update={"num_beams": 1, "temperature": 0.0}),
                                     tmp_path / "c")
    assert greedy_summary["cached"] == 0
    _, again = reason_items(items(2, "b"), cfg, tmp_path / "c")
    assert again["cached"] == 2


@pytest.mark.parametrize("reason, expected", [
    ({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "num_beams": 4},
     "reason.num_beams: 4 needs backend 'local' (transformers): the OpenAI API has no beam search"),
    ({"backend": "vllm", "num_beams": 2}, "reason.num_beams: 2 needs backend 'local' (transformers): the vllm backend"),
    ({"backend": "local", "top_p": 0.9}, "reason.top_p: 0.9 needs sampling (temperature > 0)"),
])
def test_a_decoding_setting_a_backend_cannot_honour_is_one_line_and_exit_2(write_config, cli, tmp_path, reason,
                                                                            expected):
    cfg = write_config({"name": "gen", "data": [{"name": "envri-demo", "loader": "demo"}],
                        "rerank": {"systems": [{"name": "tiny", "model": "tiny-llama"}]}, "explain": {},
                        "reason": reason})
    r = cli("reason", cfg)
    assert r.returncode == 2, r.stderr[-2000:]
    assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "results").exists()


def test_the_listwise_teacher_and_reranker_refuse_beam_search_over_the_openai_api():
    from pydantic import ValidationError

    from bench.config import ListwiseSystem
    from bench.r2r.config import TeacherConfig

    with pytest.raises(ValidationError, match="num_beams: 4 needs backend 'local'"):
        ListwiseSystem(name="x", kind="listwise", backend="openai", model="gpt-4o", num_beams=4)
    with pytest.raises(ValidationError, match="num_beams: 3 needs backend 'local'"):
        TeacherConfig(backend="openai", model="gpt-4o", num_beams=3)


def test_a_greedy_teacher_needs_no_top_p_and_a_sampling_setting_without_sampling_is_refused():
    from pydantic import ValidationError

    from bench.r2r.config import TeacherConfig

    assert (TeacherConfig().temperature, TeacherConfig().top_p) == (1.0, 0.9)  # R2R's teacher sampling
    assert TeacherConfig(temperature=0).top_p == 1.0  # greedy: top_p off, as recorded in the decoding
    with pytest.raises(ValidationError, match="top_p: 0.9 needs sampling"):
        TeacherConfig(temperature=0, top_p=0.9)
