"""A user adds an explainer, a training method, a scorer kind, a first stage and a data loader from their own
package - real entry points in a dist-info folder on the path, no edit of the harness - and the harness finds
and runs each one. The plugin package is the worked example of docs/architecture.md."""
from __future__ import annotations

import importlib
import os
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, run_cli

PLUGIN = '''
"""rb_plugin: extensions of rerank-bench living outside the harness."""
from dataclasses import dataclass

import numpy as np

from bench.data.collection import Collection, Document, Run
from bench.explain.explainers import Attribution, Explainer
from bench.rerank.prompts import FittedPair
from bench.rerank.scorers import Scorer
from bench.train.registry import TrainingMethod


@dataclass(frozen=True)
class OcclusionParams:
    baseline: float = 0.0  # added to every drop (0: the plain occlusion drop)


class Occlusion(Explainer):
    """Each word's value: the score drop when that word alone is removed (the WordGame does the removing)."""

    name = "occlusion"
    library = "numpy"
    stochastic = False
    Params = OcclusionParams

    def explain(self, scorer, pair, game, params, settings, seed):
        full = np.ones((1, pair.n_words))
        without = 1 - np.eye(pair.n_words)
        return Attribution(game(full)[0] - game(without) + params.baseline)


class PluginSft(TrainingMethod):
    """SFT on the relevance prompt, built from the harness's public pieces (model loading, the SFT rows)."""

    name = "plugin-sft"
    trainer = "trl SFTTrainer (plugin)"
    data = "pointwise items"
    rows = "train_items"

    def build(self, cfg, common, callback, stats):
        from trl import SFTConfig, SFTTrainer

        from bench.model_loading import causal_lm, load_tokenizer, lora_config
        from bench.train.methods import sft_dataset

        h = cfg["hyper"]
        tok = load_tokenizer(cfg["model_dir"], h["max_length"], padding_side="right")
        data = sft_dataset(tok, cfg["data"]["train_items"], cfg["prompt"], h["max_length"], stats)
        args = SFTConfig(**common, max_length=h["max_length"], completion_only_loss=True, packing=False)
        return SFTTrainer(model=causal_lm(cfg["model_dir"]), args=args, train_dataset=data, processing_class=tok,
                          peft_config=lora_config(cfg, "CAUSAL_LM"), callbacks=[callback]), tok


class OverlapScorer(Scorer):
    """Scores a pair by the query words found in the item."""

    def __init__(self, spec, model_dir=None):
        self.spec, self.name = spec, spec.name

    def fit(self, query, item):
        return FittedPair((query, item), query, item, False, False)

    def score_fitted(self, pairs):
        return np.array([len(set(p.query.lower().split()) & set(p.item.lower().split())) for p in pairs], float)


def title_overlap(collection, cfg, *, label, **_):
    """A first stage: every document, ranked by the query words in its title and text."""
    scores = {}
    for qid, q in collection.queries.items():
        words = set(q.lower().split())
        ranked = {d: float(len(words & set(doc.full_text().lower().split()))) for d, doc in collection.corpus.items()}
        scores[qid] = dict(sorted(ranked.items(), key=lambda kv: -kv[1])[: cfg.depth])
    return Run(label, scores)


title_overlap.version = 1


def toy_loader(src):
    """A data loader: `options.n` queries, each relevant to its own document."""
    n = int(src.options.get("n", 4))
    queries = {f"q{i}": f"topic {i} ozone" for i in range(n)}
    corpus = {f"d{i}": Document(f"text about topic {i} and ozone", title=f"doc {i}") for i in range(n)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(n)}
    return Collection(src.name, queries, corpus, qrels)
'''

ENTRY_POINTS = '''
[rerank_bench.explainers]
occlusion = rb_plugin:Occlusion

[rerank_bench.methods]
plugin-sft = rb_plugin:PluginSft

[rerank_bench.scorers]
overlap = rb_plugin:OverlapScorer

[rerank_bench.first_stages]
title-overlap = rb_plugin:title_overlap

[rerank_bench.data_loaders]
toy = rb_plugin:toy_loader
'''


@pytest.fixture
def plugin(tmp_path):
    """The rb_plugin distribution, installed the way pip leaves it: a module and a dist-info with entry points."""
    site = tmp_path / "site"
    (site / "rb_plugin").mkdir(parents=True)
    (site / "rb_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "rb_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    from bench.registry import KINDS, registry

    for kind in KINDS:
        for name in ("occlusion", "plugin-sft", "overlap", "title-overlap", "toy"):
            registry(kind).unregister(name)
    sys.modules.pop("rb_plugin", None)


def test_every_extension_kind_has_a_registry_that_lists_the_harness_own_entries():
    from bench.registry import KINDS, registry

    expected = {"scorers": "relevance-token", "explainers": "kernel_shap", "methods": "dpo",
                "first_stages": "bm25s", "data_loaders": "beir"}
    assert set(KINDS) == set(expected)
    for kind, name in expected.items():
        assert name in registry(kind).names(), kind
    with pytest.raises(ValueError, match="unknown explainer 'nope'"):
        registry("explainers").lookup("nope")


def test_an_explainer_from_another_package_is_found_and_is_exact_on_the_ground_truth_scorer(plugin):
    from bench.explain.config import ExplainConfig
    from bench.explain.explainers import EXPLAINERS, PairSettings, explain_pair
    from bench.explain.ground_truth import INTERACTION, ITEM, QUERY, WordWeightScorer

    assert "occlusion" in EXPLAINERS and "rb_plugin" not in sys.modules  # listed, not loaded
    cfg = ExplainConfig(explainers=["kernel_shap", {"name": "occlusion", "params": {"baseline": 0.0}}])
    assert [s.name for s in cfg.explainer_specs()] == ["kernel_shap", "occlusion"]
    scorer = WordWeightScorer(INTERACTION)
    res = explain_pair(scorer, QUERY, ITEM, ["occlusion"], PairSettings(metrics=False), seed=0)
    r = res["explainers"]["occlusion"]
    assert r["status"] == "ok"
    np.testing.assert_allclose(r["values"], scorer.exact(QUERY, ITEM)["loo"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown parameter"):
        ExplainConfig(explainers=[{"name": "occlusion", "params": {"nsamples": 3}}])


def test_a_training_method_from_another_package_joins_the_grid_and_builds_its_trainer(plugin, tmp_path):
    from bench.config import Experiment
    from bench.train.config import Hyperparameters, TrainConfig, method_info
    from bench.train.grid import training_rows
    from bench.train.methods import build_trainer

    cfg = TrainConfig(models=[{"model": "tiny-qwen2"}], methods=["plugin-sft", "sft"])
    assert cfg.methods == ["sft", "plugin-sft"]  # the harness's methods first, then plugins by name
    assert method_info("plugin-sft")[2] == "relevance-token" and training_rows("plugin-sft") == "train_items"
    with pytest.raises(Exception, match="Input should be 'sft'"):
        TrainConfig(models=[{"model": "tiny-qwen2"}], methods=["kto"])  # an unknown name: the same error as before
    Experiment.model_validate({"name": "x", "data": [{"name": "d", "loader": "demo"}],
                               "train": {"models": [{"model": "tiny-qwen2"}], "methods": ["plugin-sft"]}})

    from bench.models import resolve_model

    hyper = Hyperparameters(max_steps=1, batch_size=2, max_length=128).model_dump()
    items = [{"query": "ozone trend", "text": "ozone record at an alpine station", "relevant": True},
             {"query": "ozone trend", "text": "a recipe for bread", "relevant": False}]
    cell = {"method": "plugin-sft", "model_dir": str(resolve_model("tiny-qwen2")), "hyper": hyper, "prompt": "chat",
            "seed": 0, "use_gpu": False, "data": {"train_items": items}}
    from transformers import TrainerCallback

    trainer, tok = build_trainer(cell, str(tmp_path / "hf"), callback=TrainerCallback(), world=1)
    assert type(trainer).__name__ == "SFTTrainer" and len(trainer.train_dataset) == 2
    trainer.train()  # one optimiser step of the tiny model
    assert trainer.state.global_step == 1


def test_train_dry_run_lists_a_plugin_method_cell(plugin, tmp_path, write_config):
    config = write_config({
        "name": "plugin-grid", "seed": 7, "data": [{"name": "envri-demo", "loader": "demo"}],
        "splits": {"scheme": "random", "train": 0.6, "valid": 0.2, "test": 0.2}, "ray": {"num_cpus": 1},
        "evaluate": {"split": "test"},
        "train": {"models": [{"model": "tiny-qwen2"}], "methods": ["plugin-sft"]}})
    env = {"PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = run_cli("train", config, "--dry-run", env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "plugin-sft" in out.stdout and "1 cells" in out.stdout


def _experiment(tmp_path, **tree):
    from bench.config import Experiment

    return Experiment.model_validate({"name": "plugin-run", "results_dir": str(tmp_path / "results"),
                                      "splits": {"scheme": "none"}, **tree})


def test_a_data_loader_from_another_package_feeds_the_data_stage(plugin, tmp_path):
    from bench.pipeline import Pipeline

    exp = _experiment(tmp_path, data=[{"name": "toy", "loader": "plugin", "plugin": "toy", "options": {"n": 5}}])
    ds = Pipeline(exp).dataset("toy")
    assert sorted(ds.collection.queries) == [f"q{i}" for i in range(5)] and ds.collection.qrels["q3"] == {"d3": 1}
    assert Pipeline(exp).dataset("toy").key == ds.key  # cached under a stable key
    with pytest.raises(Exception, match="unknown data loader 'nope'"):
        _experiment(tmp_path, data=[{"name": "t", "loader": "plugin", "plugin": "nope"}])


def test_a_first_stage_from_another_package_ranks_and_is_cached(plugin, tmp_path):
    from bench.pipeline import Pipeline

    exp = _experiment(tmp_path, data=[{"name": "toy", "loader": "plugin", "plugin": "toy"}],
                      retrieve={"method": "title-overlap", "depth": 3})
    first = Pipeline(exp).first_stage("toy")
    assert first.info.name == "title-overlap" and first.info.method == "title-overlap"
    assert all(next(iter(first.run.scores[q])) == f"d{q[1:]}" for q in first.run.scores)  # its own doc first
    assert all(len(ranked) == 3 for ranked in first.run.scores.values())
    assert Pipeline(exp).first_stage("toy").key == first.key
    with pytest.raises(Exception, match="Input should be 'bm25s'"):  # an unknown name: the same error as before
        _experiment(tmp_path, data=[{"name": "d", "loader": "demo"}], retrieve={"method": "nope"})


def test_a_scorer_kind_from_another_package_scores_pairs(plugin, tmp_path):
    from bench.rerank.scorers import SCORER_KINDS, build_scorer

    (tmp_path / "overlap").mkdir()
    (tmp_path / "overlap" / "config.json").write_text("{}")  # the plugin scorer's "model": nothing to load
    exp = _experiment(tmp_path, data=[{"name": "d", "loader": "demo"}],
                      rerank={"systems": [{"name": "overlap", "kind": "overlap", "model": str(tmp_path / "overlap")}]})
    assert "overlap" in SCORER_KINDS
    scorer = build_scorer(exp.rerank.scorers[0])
    assert list(scorer.score(["ozone trend", "ozone"], ["ozone trend today", "bread"])) == [2.0, 0.0]
