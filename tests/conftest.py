"""Shared test set-up: offline, single-threaded, loopback-only; real data from ../shared/data."""
from __future__ import annotations

import os

for key, value in {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
                   "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TOKENIZERS_PARALLELISM": "false",
                   "RAY_AUTH_MODE": "disabled", "DS_BUILD_OPS": "0"}.items():
    os.environ.setdefault(key, value)

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RERANK_BENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (present in CI; absent in a user's fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray cluster (2 CPUs, loopback) shared by the tests of a session."""
    from bench.cluster import ensure_ray
    from bench.config import RayConfig

    ray = ensure_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


@pytest.fixture
def write_config(tmp_path):
    """Write an experiment YAML into tmp_path (results go to tmp_path/results) and return its path."""

    def write(tree: dict, name: str = "exp.yaml") -> Path:
        tree = {"results_dir": str(tmp_path / "results"), **tree}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return path

    return write


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 900, env: dict | None = None):
    """Run the real `rerank-bench` entry point in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def cli():
    return run_cli
