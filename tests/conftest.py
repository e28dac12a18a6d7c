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


def ctrl_c_reaches_python() -> None:
    """Popen preexec_fn for tests that press Ctrl-C (SIGINT) on a CLI: a shell's background job
    (`pytest ... &`) starts with SIGINT ignored, an ignored disposition is inherited, and Python then
    installs no KeyboardInterrupt handler - the CLI would not see the test's Ctrl-C at all."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


# ------------------------------------------------------------------ the project's OpenAI-compatible server
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_stats(base: str) -> dict:
    import httpx

    return httpx.get(base + "/stats", timeout=5).json()


def set_faults(base: str, plan: list[str]) -> None:
    import httpx

    httpx.post(base + "/admin/faults", json={"plan": plan}, timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def openai_server():
    """`python -m bench.reason.openai_app` (SmolLM2-135M-Instruct) on 127.0.0.1, stopped by process group."""
    import signal
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.reason.openai_app", "--model", "smollm2-135m-instruct",
                             "--host", "127.0.0.1", "--port", str(port), "--slow-s", "20"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"server at {base} not ready")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
