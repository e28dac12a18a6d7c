"""The best trial of a finished sweep, as a leaderboard system (read by the pipeline).

Kept apart from `bench.tune.sweep` so that the pipeline reads a sweep's result without importing
the sweep (which itself builds on the pipeline's stages): no import cycle.
"""
from __future__ import annotations

import json
from pathlib import Path


def tune_root(p) -> Path:
    return (p.out_dir / "tune").resolve()


def base_train(p):
    """The TrainConfig every trial starts from: tune.train, else the experiment's train slice."""
    return p.exp.tune.train or p.exp.train


def tuned_systems(p) -> list:
    """The best trial as a leaderboard system (kind 'tuned'), once a sweep has written best.json."""
    from bench.config import ScorerSpec
    from bench.models import PRESETS
    from bench.systems import SystemInfo

    best_file = tune_root(p) / "best.json"
    if p.exp.tune is None or p.exp.tune.space is None or not best_file.is_file():
        return []
    best = json.loads(best_file.read_text())
    s = dict(best["spec"])
    model = best["config"].get("model") or base_train(p).models[0].model
    adapter = tune_root(p) / "best" / "adapter"
    if adapter.is_dir():
        s.update(model=model, adapter=str(adapter))
    else:
        s["model"] = str(tune_root(p) / "best" / "model")
    method = best["config"].get("method") or base_train(p).methods[0]
    preset = PRESETS.get(model)
    name = f"tuned-{model}-{method}"
    spec = ScorerSpec(**{**s, "name": name, "params": preset.params if preset else None})
    trained_on = (list(base_train(p).datasets) or [p.exp.data[0].name])[0]  # the base cell's collection
    info = SystemInfo(name, kind="tuned", params=preset.params if preset else "", family=preset.family if preset else "",
                      method=method, train_dataset=trained_on)
    return [(spec, info)]


