"""KernelSHAP attributions: words from sub-word pieces, batched coalitions, no silent top-10 cut,
determinism, additivity, bad items marked; and the whole explain -> reason -> evaluate flow."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bench.config import ScorerSpec
from bench.explain.config import ExplainConfig
from bench.explain.kernel_shap import explain_item
from bench.explain.words import compose, segment
from conftest import ROOT

TEXT = ("Hourly atmospheric carbon dioxide and methane mole fractions measured at twelve European tall tower "
        "stations of the ICOS network between 2018 and 2022, calibrated to the WMO scale, with uncertainty "
        "estimates and quality flags.")


@pytest.fixture(scope="module")
def scorer():
    from bench.rerank.scorers import build_scorer

    return build_scorer(ScorerSpec(name="tiny", model="tiny-llama", batch_size=64))


def test_subword_pieces_are_merged_back_into_words(scorer):
    seg = segment(TEXT, scorer.tokenizer)
    assert len(seg.tokens) > len(seg.words) == len(TEXT.split())  # some words are split into pieces
    split_words = {seg.words[w] for w in seg.token_word if seg.token_word.count(w) > 1}
    assert split_words  # e.g. "atmospheric" in pieces, attributed as one word
    for w, word in enumerate(seg.words):
        assert "".join(t for t, tw in zip(seg.tokens, seg.token_word) if tw == w) == word
    assert compose(seg.text, seg.word_spans, np.ones(len(seg.words))) == TEXT
    keep = np.ones(len(seg.words))
    keep[1] = 0
    assert compose(seg.text, seg.word_spans, keep) == TEXT.replace("atmospheric ", "")
    assert compose(seg.text, seg.word_spans, keep, "mask", "_") == TEXT.replace("atmospheric", "_")


def test_kernel_shap_scores_all_coalitions_in_batches_and_gives_every_word_a_value(scorer):
    cfg = ExplainConfig(nsamples=128, k=10, ks=[1, 5])
    r = explain_item(scorer, "CO2 tall tower data", TEXT, cfg, seed=7)
    assert r["status"] == "ok" and len(r["words"]) == len(TEXT.split()) > 25
    # shap called the model 3 times (empty item, full item, all samples) + 1 erasure call: not once per coalition
    assert r["forward_calls"] == 4 and r["coalitions"] >= 128
    assert np.count_nonzero(r["word_values"]) > 20  # l1_reg is explicit: not cut to 10 features
    cut = explain_item(scorer, "CO2 tall tower data", TEXT, cfg.model_copy(update={"l1_reg": "num_features(10)"}), 7)
    assert np.count_nonzero(cut["word_values"]) <= 10  # what shap's default would silently have done
    # additivity: base value + sum of attributions = the scorer's score of the item
    full = float(scorer.score(["CO2 tall tower data"], [r["text"]])[0])
    assert r["full_score"] == pytest.approx(full, abs=1e-3)
    assert r["base_value"] + sum(r["word_values"]) == pytest.approx(full, abs=1e-3)
    assert [t["value"] for t in r["topk"]] == sorted(r["word_values"], reverse=True)[:10]
    assert set(r["erasure"]) == {"1", "5"} and set(r["erasure"]["5"]) == {"removed", "kept", "random"}
    again = explain_item(scorer, "CO2 tall tower data", TEXT, cfg, seed=7)
    assert again["word_values"] == r["word_values"]  # deterministic for a seed


def test_token_unit_sums_pieces_into_word_values(scorer):
    cfg = ExplainConfig(unit="token", nsamples=64, k=3, ks=[1])
    r = explain_item(scorer, "co2", "Atmospheric carbon dioxide at Hyytiala station", cfg, seed=1)
    assert len(r["token_values"]) == len(r["tokens"]) > len(r["words"])
    sums = np.zeros(len(r["words"]))
    np.add.at(sums, r["token_word"], r["token_values"])
    assert np.allclose(sums, r["word_values"])


def test_empty_item_and_k_larger_than_the_item_are_marked_not_fatal(scorer):
    empty = explain_item(scorer, "q", "   ", ExplainConfig(), seed=1)
    assert empty["status"] == "empty" and "no tokens" in empty["message"] and empty["topk"] == []
    short = explain_item(scorer, "q", "ozone sonde profiles", ExplainConfig(k=10, ks=[1, 10], nsamples=16), seed=1)
    assert short["status"] == "k_clamped" and short["k"] == 3 and len(short["topk"]) == 3
    assert "fewer than k=10" in short["message"]


def test_explain_reason_evaluate_in_the_pipeline(write_config, cli, tmp_path):
    """Demo data, tiny-llama re-ranker explained in 2 Ray actors, SmolLM2 writing explanations."""
    cfg = write_config({
        "name": "xp", "seed": 3, "data": [{"name": "envri-demo", "loader": "demo"}],
        "splits": {"scheme": "random", "train": 0.6, "valid": 0.2, "test": 0.2},
        "ray": {"num_cpus": 2},
        "rerank": {"depth": 10, "systems": [{"name": "tiny", "model": "tiny-llama", "batch_size": 16}]},
        "evaluate": {"measures": ["nDCG@10"], "split": "test"},
        "explain": {"top_items": 1, "max_queries": 2, "nsamples": 32, "max_item_tokens": 40, "k": 5, "ks": [1, 5],
                    "actors": 2},
        "reason": {"backend": "local", "model": "smollm2-135m-instruct", "max_new_tokens": 24},
    })
    # an empty model cache, as on a new machine: the presets are built here (SmolLM2 from its GGUF file)
    cold = {"RERANK_BENCH_CACHE": str(tmp_path / "empty-model-cache")}
    r = cli("run", cfg, env=cold)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "results" / "xp"
    # The console reads like a report: every line is ours (a timed stage line, a summary, a table row,
    # the closing line). Library output - transformers' own bar while it converts the GGUF weights,
    # DeepSpeed's "Setting accelerator" notice, both once printed here - is in the log file instead.
    ours = re.compile(r"^(\d\d:\d\d:\d\d \S|\|[ :|-]|[\w-]+: \S|results: |\d+ stage artifacts|  \S)")
    foreign = [line for line in (r.stdout + r.stderr).splitlines() if line.strip() and not ours.match(line)]
    assert not foreign and "\r" not in r.stderr, foreign or r.stderr[-2000:]
    log = re.search(r"^results: .*logs in (\S+\.log)\)$", r.stdout, re.M).group(1)
    assert "Converting and de-quantizing GGUF tensors" in (ROOT / log).read_text()  # ROOT / an absolute path = it
    items = sorted((out / "explanations" / "tiny").glob("*.json"))
    assert len(items) == 2
    item = json.loads(items[0].read_text())
    assert {"tokens", "words", "word_values", "topk", "explanations", "erasure"} <= set(item)
    assert item["explanations"]["with"]["status"] == "ok" and item["explanations"]["without"]["status"] == "ok"
    assert "Top 5 tokens" in item["explanations"]["with"]["prompt"]
    assert "Top 5 tokens" not in item["explanations"]["without"]["prompt"]
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "with attributions" in (out / "table3.md").read_text()
    board = (out / "leaderboard.md").read_text()
    for col in ("comp@5", "suff@5", "AOPC comp", "grounding@5", "top1 cosine", "top1 BERTScore"):
        assert col in board, board
    metrics = json.loads((out / "explanations.json").read_text())
    assert metrics["systems"]["tiny"]["explanations_with"] == 2
    assert "bertscore_f1" in metrics["systems"]["tiny"]["with_vs_without"]
    again = cli("run", cfg, env=cold)
    assert again.returncode == 0 and "nothing to recompute" in again.stdout


@pytest.mark.parametrize("section, expected", [
    ({"explain": {"systems": ["nope"]}}, "explain.systems: no re-rank system named 'nope'"),
    ({"explain": {"l1_reg": "auto"}}, "explain.l1_reg"),
    ({"explain": {}, "reason": {"backend": "openai", "api_key_env": "RB_UNSET_KEY_VAR"}},
     "reason.api_key_env: environment variable RB_UNSET_KEY_VAR is not set"),
    ({"reason": {"backend": "local"}}, "reason: needs the explain stage"),
    ({"explain": {"explainers": ["kernel_shap", "shap"]}}, "unknown explainer 'shap'"),
    ({"explain": {"explainers": [{"name": "lime", "params": {"nsamples": 64}}]}}, "unknown parameter(s) ['nsamples']"),
    ({"explain": {"explainers": ["loo", "loo"]}}, "explainers listed twice"),
    ({"explain": {"unit": "token"}}, "explain.unit: the explain stage attributes words"),
    ({"explain": {"systems": "every"}}, "explain.systems"),
])
def test_bad_explain_or_reason_config_is_one_line_and_exit_2(write_config, cli, section, expected):
    cfg = write_config({"name": "bad", "data": [{"name": "envri-demo", "loader": "demo"}],
                        "rerank": {"systems": [{"name": "tiny", "model": "tiny-llama"}]}, **section})
    r = cli("reason" if "reason" in section else "explain", cfg, env={"OPENAI_BASE_URL": ""})
    assert r.returncode == 2, r.stderr[-2000:]
    assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1
