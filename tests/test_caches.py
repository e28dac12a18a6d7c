"""Caches that cannot go stale (issue 18): keys derived from what determines an artifact - code, data,
weights, device - never from a number someone must remember to bump.

Before: stage keys carried hand-bumped versions ("rerank": 2, TRAIN_VERSION = 2) not bumped when the
fitting rule changed; rerank/explain keys left out the device and dtype; the dense first stage was
keyed by the encoder's name; hub models were not pinned; the response cache ignored base_url; and a
finished artifact was deleted before a second copy was renamed over it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from conftest import ROOT, run_cli


def _copy_package(tmp_path: Path) -> Path:
    dest = tmp_path / "src"
    shutil.copytree(ROOT / "bench", dest / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_code_fingerprints_follow_the_code_not_its_comments(tmp_path):
    """The rerank stage's fingerprint covers the modules it imports, transitively (the fitting rule in
    bench/rerank/prompts.py is imported by the scorer, not by the stage itself); comments, docstrings and
    modules that cannot change an artifact (the console) do not count."""
    from bench.codehash import code_closure

    src = _copy_package(tmp_path) / "bench"

    def fingerprint():
        return json.dumps(code_closure("bench.rerank.stage", root_dir=src), sort_keys=True)

    before = fingerprint()
    assert "bench.rerank.prompts" in code_closure("bench.rerank.stage", root_dir=src)
    prompts = src / "rerank" / "prompts.py"
    prompts.write_text(prompts.read_text().replace('ANSWER_RESERVE = 8', 'ANSWER_RESERVE = 8  # a comment')
                       .replace('"""How a (query, item) pair', '"""How, said differently, a (query, item) pair'))
    (src / "console.py").write_text((src / "console.py").read_text() + "\nCONSOLE_CHANGE = 1\n")
    assert fingerprint() == before
    prompts.write_text(prompts.read_text().replace("ANSWER_RESERVE = 8", "ANSWER_RESERVE = 9"))
    assert fingerprint() != before


def test_editing_a_stage_code_path_recomputes_that_stage_and_only_what_follows(tmp_path):
    """The real CLI from a copy of the package: an unchanged re-run recomputes nothing; an edit of the
    fitting rule's module (deep in the rerank stage's imports) recomputes the rankings, not the data or
    the first stage."""
    src = _copy_package(tmp_path)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "code-keys", "results_dir": str(tmp_path / "results"), "ray": {"num_cpus": 1},
        "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 3}], "splits": {"scheme": "none"},
        "rerank": {"depth": 3, "systems": [{"name": "tiny", "model": "tiny-llama", "max_length": 128}]},
        "evaluate": {"measures": ["nDCG@10"]}}))
    env = {"PYTHONPATH": str(src)}
    runs = []
    for edit in (None, None, "prompts"):
        if edit:
            prompts = src / "bench" / "rerank" / "prompts.py"
            prompts.write_text(prompts.read_text() + "\n\ndef a_new_helper():\n    return 1\n")
        out = run_cli("rerank", cfg, cwd=tmp_path, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(out.stdout + out.stderr)
    assert "3 stage artifacts computed, 0 reused" in runs[0], runs[0][-1500:]  # data, first stage, ranking
    assert "nothing to recompute" in runs[1], runs[1][-1500:]
    rerank_line = next(ln for ln in runs[2].splitlines() if "rerank done" in ln)
    assert "1 computed, 0 cached" in rerank_line, rerank_line
    assert "1 stage artifacts computed, 2 reused from cache" in runs[2], runs[2][-1500:]


def test_rerank_and_explain_keys_cover_device_and_dtype(tmp_path):
    """bf16 on a GPU and float32 on a CPU give different scores: different artifacts."""
    from bench.config import Experiment, ScorerSpec
    from bench.pipeline import Pipeline

    exp = Experiment.model_validate({"name": "dev", "results_dir": str(tmp_path),
                                     "data": [{"name": "d", "loader": "demo", "max_queries": 2}]})
    p = Pipeline(exp)
    spec = ScorerSpec(name="s", model="tiny-llama")
    cpu = p._rerank_key("d", spec)
    assert p._rerank_key("d", spec.model_copy(update={"dtype": "bfloat16"})) != cpu
    gpu = Pipeline(exp.model_copy(update={"rerank": exp.rerank.model_copy(update={"gpus_per_actor": 1.0})}))
    assert gpu._rerank_key("d", spec) != cpu


def test_the_dense_first_stage_is_keyed_by_the_encoder_weights(tmp_path):
    from bench.config import Experiment
    from bench.models import minilm_dir, model_fingerprint
    from bench.pipeline import Pipeline

    encoder = tmp_path / "minilm"
    shutil.copytree(minilm_dir(), encoder)
    exp = Experiment.model_validate({"name": "dense", "results_dir": str(tmp_path / "r"),
                                     "data": [{"name": "d", "loader": "demo", "max_queries": 2}],
                                     "retrieve": {"method": "dense", "model": str(encoder)}})
    before = Pipeline(exp).retrieve_key("d")
    weights = next(encoder.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the weights
    weights.write_bytes(bytes(data))
    model_fingerprint.cache_clear()
    assert Pipeline(exp).retrieve_key("d") != before


def test_a_hub_model_is_pinned_to_the_commit_of_its_snapshot(tmp_path, monkeypatch):
    """Hub ids resolve to a snapshot of one commit in the Hugging Face cache (here built locally in its
    real layout); the key names that commit, and `org/name@revision` picks another."""
    from bench.models import model_fingerprint, resolve_model

    tiny = Path(resolve_model("tiny-llama"))
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    repo = cache / "models--acme--tiny"
    for sha in ("a" * 40, "b" * 40):
        shutil.copytree(tiny, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    model_fingerprint.cache_clear()
    assert resolve_model("acme/tiny") == str(repo / "snapshots" / ("a" * 40))
    assert model_fingerprint("acme/tiny") == "acme/tiny@" + "a" * 40
    assert resolve_model("acme/tiny@" + "b" * 40) == str(repo / "snapshots" / ("b" * 40))
    (repo / "refs" / "main").write_text("b" * 40)  # the branch moved: another commit, another key
    model_fingerprint.cache_clear()
    assert model_fingerprint("acme/tiny") == "acme/tiny@" + "b" * 40


def test_the_response_cache_key_names_the_endpoint():
    from bench.reason.backends import ResponseCache, endpoint_identity
    from bench.reason.config import ReasonConfig

    cache = ResponseCache(Path("/nonexistent"))
    keys = {cache.key("openai", "m", [{"role": "user", "content": "x"}], {},
                      endpoint_identity(ReasonConfig(backend="openai", model="m", base_url=url)))
            for url in ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1", "http://127.0.0.1:8000/v1/")}
    assert len(keys) == 2  # two servers, and a trailing slash is the same server


def test_a_finished_artifact_is_never_deleted_by_a_second_build(tmp_path):
    """Two runs build the same key; the one that finishes second keeps the first one's artifact (the
    old code deleted the finished folder, then renamed its own over it)."""
    from bench.artifacts import DONE_MARKER, StageCache

    cache = StageCache(tmp_path)
    final = cache.path("stage", "k")

    def build(tmp: Path) -> None:
        (tmp / "out.txt").write_text("second")
        # meanwhile another process finishes the same key
        other = StageCache(tmp_path)
        other.get_or_build("stage", "k", lambda t: (t / "out.txt").write_text("first"), lambda p: p)
        assert (final / DONE_MARKER).is_file()
        build.inode = os.stat(final).st_ino

    got = cache.get_or_build("stage", "k", build, lambda p: (p / "out.txt").read_text())
    assert got == "first" and os.stat(final).st_ino == build.inode
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_an_interrupted_attempt_is_replaced(tmp_path):
    from bench.artifacts import StageCache

    cache = StageCache(tmp_path)
    final = cache.path("stage", "k")
    final.mkdir(parents=True)
    (final / "partial.txt").write_text("from a killed run")  # no done-marker
    assert cache.get_or_build("stage", "k", lambda t: (t / "out.txt").write_text("ok"),
                              lambda p: (p / "out.txt").read_text()) == "ok"
    assert not (final / "partial.txt").exists()

