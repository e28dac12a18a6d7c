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
