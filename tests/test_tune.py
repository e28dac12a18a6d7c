"""Ray Tune sweeps: bad input exits 2 before any trial; an interrupted sweep resumes without
re-running finished trials; the best trial (selected on valid) joins the leaderboard on test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, ctrl_c_reaches_python, run_cli

DEMO = {"data": [{"name": "envri-demo", "loader": "demo", "max_queries": 16}],
        "splits": {"scheme": "random", "train": 0.5, "valid": 0.25, "test": 0.25},
        "retrieve": {"depth": 20}, "rerank": {"depth": 5},
        "evaluate": {"measures": ["nDCG@10"], "split": "test"}}
BASE_TRAIN = {"models": [{"model": "tiny-qwen2"}], "methods": ["sft"], "prompt": "plain",
              "hyper": {"max_steps": 2, "batch_size": 2, "max_length": 128, "logging_steps": 1}}


def sweep_tree(name: str, space: dict, **tune) -> dict:
    return {"name": name, **DEMO, "tune": {"train": BASE_TRAIN, "space": space, "report_every": 1,
                                           "max_concurrent_trials": 1, **tune}}


@pytest.mark.parametrize("case,tune_update,expected", [
    ("empty-space", {"space": {}}, "empty search space"),
    ("unknown-distribution", {"space": {"lr": {"normal": [0, 1]}}}, "unknown distribution 'normal'"),
    ("lo-above-hi", {"space": {"lr": {"loguniform": [1e-3, 1e-5]}}}, "lo must be < hi"),
    ("not-a-list", {"space": {"lora_r": {"choice": 8}}}, "expected a non-empty list"),
    ("unknown-hyperparameter", {"space": {"learning_rate": {"choice": [1e-4]}}}, "unknown hyperparameter 'learning_rate'"),
    ("invalid-value", {"space": {"lora_r": {"choice": [0, 8]}}}, "value 0 is not a valid lora_r"),
    ("unreported-objective", {"metric": "valid_MAP@7"}, "is not reported by any trial"),
    ("missing-searcher", {"search": {"type": "hyperopt"}}, "pip install hyperopt"),
    ("seed-not-an-integer", {"space": {"seed": {"grid": [1, 2.5]}}}, "seed: expected"),
    ("fraction-out-of-range", {"space": {"train_fraction": {"grid": [0, 0.5]}}}, "fractions in (0, 1]"),
    ("two-size-axes", {"space": {"train_fraction": {"grid": [0.5]}, "train_queries": {"grid": [2]}}},
     "two names of one axis"),
    ("more-queries-than-the-split", {"space": {"train_queries": {"grid": [2, 500]}}}, "the train split has 8"),
])
def test_bad_sweep_config_is_one_line_exit_2_before_any_trial(write_config, tmp_path, case, tune_update, expected):
    tree = sweep_tree(f"bad-{case}", {"lr": {"choice": [1e-4, 1e-3]}})
    tree["tune"].update(tune_update)
    if case == "missing-searcher":
        pytest.importorskip("ray")
        try:
            import hyperopt  # noqa: F401
            pytest.skip("hyperopt is installed here")
        except ImportError:
            pass
    from bench.cli import main

    path = write_config(tree)
    proc = run_cli("tune", path, timeout=120) if case == "empty-space" else None
    if proc is not None:  # one case through the real entry point, the rest in-process (fast)
        rc, err = proc.returncode, proc.stderr.strip()
    else:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stderr(buf):
            rc = main(["-q", "tune", str(path)])
        err = buf.getvalue().strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "results" / f"bad-{case}" / "tune").exists(), "a trial directory was created"


def _completed_trials(sweep_dir: Path) -> int:
    """Trials Tune has recorded as finished in its saved experiment state (what a resume acts on)."""
    from bench.tune.sweep import saved_trial_states

    return sum(s == "TERMINATED" for s in saved_trial_states(sweep_dir).values())


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(write_config, tmp_path):
    """Ctrl-C mid-sweep, then `--resume`: finished trials keep their results and never start again."""
    path = write_config(sweep_tree("resume", {"lr": {"grid": [1e-4, 3e-4, 1e-3, 3e-3]}},
                                   scheduler={"type": "fifo"}, search={"type": "grid"}))
    out = tmp_path / "results" / "resume"
    starts = out / "tune" / "starts.log"  # one line per trial start: "<trial id> <time>"
    sweep_dir = out / "tune" / "ray" / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "tune", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_reaches_python)
    deadline = time.time() + 300
    try:
        while _completed_trials(sweep_dir) < 1 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert _completed_trials(sweep_dir) >= 1, "no trial finished within 300 s"
        proc.send_signal(signal.SIGINT)  # Tune saves the experiment state on SIGINT
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, text[-3000:]
    assert "--resume" in text
    trials = pd.read_csv(out / "tune" / "trials.csv")
    finished_before = set(trials.loc[trials["status"] == "finished", "trial_id"])
    assert len(finished_before) >= 1 and (trials["status"] == "unfinished").any(), trials
    assert not (out / "tune" / "best.json").exists(), "a partial sweep must not name a best configuration"

    resumed = run_cli("tune", path, "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ids = starts.read_text().split()[::2]
    for tid in finished_before:
        assert ids.count(tid) == 1, f"finished trial {tid} was run again: {ids}"
    trials = pd.read_csv(out / "tune" / "trials.csv")
    assert len(trials) == 4 and set(trials["status"]) == {"finished"}, trials
    assert set(finished_before) <= set(trials["trial_id"])
    board = (out / "leaderboard.md").read_text()
    assert "tuned-tiny-qwen2-sft" in board  # the best trial, re-evaluated on test
    # Never selected on test: the chosen trial is the best on the validation metric.
    best = trials.loc[trials["valid_nDCG@10"].idxmax()]
    import json

    assert json.loads((out / "tune" / "best.json").read_text())["value"] == pytest.approx(best["valid_nDCG@10"])


def test_space_maps_to_ray_tune_distributions_and_searchers():
    """Each YAML distribution becomes the matching ray.tune sampler; optuna is used where installed."""
    from ray.tune.search.sample import Categorical, Float, Integer

    from bench.tune.config import TuneConfig
    from bench.tune.sweep import param_space, search_algorithm

    cfg = TuneConfig(space={"lr": {"loguniform": [1e-5, 1e-3]}, "dpo_beta": {"uniform": [0.05, 0.5]},
                            "lora_r": {"randint": [4, 16]}, "method": {"choice": ["sft", "dpo"]},
                            "batch_size": {"grid": [2, 4]}})
    space = param_space(cfg)
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-5
    assert isinstance(space["lora_r"], Integer) and space["lora_r"].upper == 17  # inclusive in YAML
    assert isinstance(space["method"], Categorical) and space["batch_size"] == {"grid_search": [2, 4]}
    from bench.tune.config import SearchConfig

    assert type(search_algorithm(cfg.model_copy(update={"search": SearchConfig(type="random")}), 1)).__name__ == \
        "BasicVariantGenerator"
    pytest.importorskip("optuna")

    assert type(search_algorithm(cfg.model_copy(update={"search": SearchConfig(type="optuna")}), 1)).__name__ == \
        "OptunaSearch"


def test_training_data_subsets_are_seeded_nested_across_sizes_and_leave_validation_alone():
    from bench.tune.sweep import subset_training_data, training_queries

    data = {"train_items": [{"qid": f"q{i}", "docid": f"d{i}{j}"} for i in range(10) for j in range(3)],
            "train_pairs": [{"qid": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(10)],
            "valid_pairs": [{"qid": "v1"}], "valid_items": [{"qid": "v1"}]}
    half = subset_training_data(data, fraction=0.5, seed=1)
    quarter = subset_training_data(data, fraction=0.25, seed=1)  # ceil(2.5) = 3 queries
    assert len(half["train_queries_used"]) == 5 and len(quarter["train_queries_used"]) == 3
    assert set(quarter["train_queries_used"]) < set(half["train_queries_used"])  # nested for one seed
    assert training_queries(half) == half["train_queries_used"]
    assert len(half["train_items"]) == 15 and {p["qid"] for p in half["train_pairs"]} == set(half["train_queries_used"])
    assert half["valid_pairs"] == data["valid_pairs"] and half["valid_items"] == data["valid_items"]
    assert subset_training_data(data, fraction=0.5, seed=1) == half  # seeded
    assert subset_training_data(data, fraction=0.5, seed=2)["train_queries_used"] != half["train_queries_used"]
    assert subset_training_data(data, queries=4, seed=1)["train_queries_used"] == \
        subset_training_data(data, fraction=0.4, seed=1)["train_queries_used"]
    assert subset_training_data(data) is data  # no size axis: the data as it is


def test_variance_over_seeds_groups_configurations_and_bootstraps_queries():
    from bench.evaluate.significance import mean_ci
    from bench.tune.sweep import variance_table

    trials = pd.DataFrame([
        {"trial_id": f"t{f}{s}", "config/train_fraction": f, "config/seed": s, "status": "finished",
         "valid_nDCG@10": v} for f, s, v in ((0.5, 1, 0.40), (0.5, 2, 0.50), (0.5, 3, 0.60), (1.0, 1, 0.70),
                                             (1.0, 2, 0.72), (1.0, 3, 0.74))])
    per_query = {f"t{f}{s}": {"valid_nDCG@10": {"a": v - 0.1, "b": v + 0.1, "c": v}}
                 for f, s, v in ((0.5, 1, 0.40), (0.5, 2, 0.50), (0.5, 3, 0.60), (1.0, 1, 0.70), (1.0, 2, 0.72),
                                 (1.0, 3, 0.74))}
    rows = {r["train_fraction"]: r for r in variance_table(trials, per_query, "valid_nDCG@10", seed=0)}
    half = rows[0.5]
    assert half["trials"] == 3 and half["seeds"] == [1, 2, 3]
    assert half["mean"] == pytest.approx(0.5) and half["sd"] == pytest.approx(0.1) and half["max"] == pytest.approx(0.6)
    assert rows[1.0]["sd"] == pytest.approx(0.02)
    pq = half["per_query"]  # each query averaged over the three seeds: a 0.4, b 0.6, c 0.5
    assert pq["mean"] == pytest.approx(0.5) and pq["n_queries"] == 3
    assert (pq["ci_low"], pq["ci_high"]) == pytest.approx(mean_ci([0.4, 0.6, 0.5], 0))


def test_a_sweep_over_seeds_and_training_data_size_reports_variance(write_config, tmp_path):
    """Two seeds x two training-data sizes: four trials, each trained on its own seeded subset of the
    training queries; variance.md/json per size over the seeds."""
    import json

    path = write_config(sweep_tree("seeds", {"seed": {"grid": [1, 2]}, "train_fraction": {"grid": [0.5, 1.0]}},
                                   scheduler={"type": "fifo"}, search={"type": "grid"}, max_concurrent_trials=2))
    proc = run_cli("tune", path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "results" / "seeds" / "tune"
    trials = pd.read_csv(root / "trials.csv")
    assert len(trials) == 4 and set(trials["status"]) == {"finished"}
    assert sorted(zip(trials["config/train_fraction"], trials["config/seed"])) == \
        [(0.5, 1), (0.5, 2), (1.0, 1), (1.0, 2)]
    assert set(trials.loc[trials["config/train_fraction"] == 1.0, "train_queries_used"]) == {8}  # the whole split
    assert set(trials.loc[trials["config/train_fraction"] == 0.5, "train_queries_used"]) == {4}
    variance = json.loads((root / "variance.json").read_text())
    assert [r["train_fraction"] for r in variance["rows"]] == [0.5, 1.0]
    for r in variance["rows"]:
        assert r["seeds"] == [1, 2] and r["trials"] == 2 and r["per_query"]["n_queries"] == 4
        seeds = trials[trials["config/train_fraction"] == r["train_fraction"]]["valid_nDCG@10"]
        assert r["mean"] == pytest.approx(seeds.mean()) and r["sd"] == pytest.approx(seeds.std(ddof=1))
    assert "sd over seeds" in (root / "variance.md").read_text()
