"""The device check (`scripts/gpu_check.sh`) is known to work before device time is spent on it:
every code path - scorer in float32 and low precision, one LoRA step of each method through the
train stage's builders, KernelSHAP - runs here with a tiny model on the CPU (`--smoke`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_check_runs_every_path_with_a_tiny_model(tmp_path):
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "gpu-smoke.json").read_text())
    assert set(result["scorer"]) >= {"float32"} and result["scorer"]["float32"]["pairs_per_s"] > 0
    methods = result["training"]["methods"]
    assert set(methods) == {"sft", "rm", "dpo", "grpo", "rloo", "ppo"}
    assert all("error" not in m and m["samples_per_s"] > 0 for m in methods.values()), methods
    assert result["kernel_shap"]["items_per_s"] > 0
