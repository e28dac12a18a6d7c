"""Every shipped experiment config validates (and names only models the registry knows)."""
from __future__ import annotations

import pytest

from bench.config import load_experiment
from bench.pipeline import Pipeline
from conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    exp = load_experiment(path)
    Pipeline(exp).preflight()
