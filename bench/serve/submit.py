"""`rerank-bench submit`: an experiment as a Ray Job on a running cluster, logs streamed, results fetched.

1. The config (with its --set overrides) is validated here, before anything is sent.
2. The project directory is uploaded as the job's `working_dir` (without .venv, results, .git,
   caches), and the job runs `python -m bench.cli run CONFIG --set ... --set results_dir=REMOTE`:
   exactly what `rerank-bench run` does on a laptop, with results at an absolute path on the
   head node (where Ray runs job entrypoints that ask for no resources).
3. Logs are streamed through the job server (`tail_job_logs`) until the job ends.
4. Fetching, through Ray's object store: the results are on the head node's disk, which the
   client cannot read. The client connects to the cluster (`--ray-address`, by default Ray
   Client at ray://<head>:10001), runs a task pinned to the head node that packs
   REMOTE/<experiment> as a tar.gz and returns it as an object; the bytes travel through the
   object store, are checked against the task's size and SHA-256, and are unpacked atomically into
   DIR/<experiment>. Model weights are left out by default (they belong in train.storage_path,
   s3:// or gs://).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from bench.errors import InputError

log = logging.getLogger("bench")

# Never uploaded: environments, outputs, VCS and caches (Ray also honours .gitignore).
EXCLUDES = [".venv", ".venv-*", "results", ".git", ".pytest_cache", "*.egg-info", "__pycache__", "build",
            "dist", ".whl", "*.pyc"]
# Forwarded to the job's driver when set here: switches that mean the same on any machine (no
# local paths). They go on the entrypoint's command line, not in the job's runtime_env: the
# driver's own `ray.init(runtime_env={"env_vars": ...})` (bench.cluster) passes them on to its
# workers, and Ray refuses a job whose runtime_env repeats a key the driver's sets.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RAY_USAGE_STATS_ENABLED")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

def pack_results(root: str, weights: bool, skip: tuple[str, ...] = WEIGHT_SUFFIXES) -> dict:
    """On the head node: the results folder as tar.gz bytes, with their size and SHA-256."""
    import io
    import os

    if not os.path.isdir(root):
        return {"error": f"no results folder at {root}"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=".", filter=lambda ti: None if (not weights and ti.isfile() and ti.name.endswith(skip))
                else ti)
    data = buf.getvalue()
    if len(data) > MAX_ARCHIVE_BYTES:
        return {"error": f"archive of {len(data)} bytes is above the {MAX_ARCHIVE_BYTES}-byte limit"}
    return {"data": data, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@dataclass
class SubmitOptions:
    config: Path
    address: str
    overrides: list[str]
    fetch: Optional[Path] = None
    python: Optional[str] = None
    remote_results: str = "/tmp/rerank-bench-results"
    working_dir: Optional[Path] = None
    fetch_weights: bool = False
    wait: bool = True
    ray_address: Optional[str] = None  # where the client joins the cluster to fetch; default ray://<head>:10001


def project_dir() -> Path:
    import bench

    return Path(bench.__file__).resolve().parents[1]


def python_command(opts: SubmitOptions, argv: list[str], env: Optional[dict] = None) -> str:
    """A shell command running `python ARGV` with the cluster's python.

    `--python` wins. Otherwise: this virtual env's python when that path exists on the head
    node (a cluster on this machine or a shared filesystem), else `python` from the head's PATH
    (what clusters/*.yaml and the KubeRay image install). A shell test, so the same entrypoint
    is right for a loopback cluster, an SSH tunnel (`ray dashboard`) and a kubectl port-forward.
    """
    args = shlex.join(argv)
    prefix = shlex.join(["env", *(f"{k}={v}" for k, v in (env or {}).items())]) + " " if env else ""
    if opts.python:
        return f"exec {prefix}{shlex.quote(opts.python)} {args}"
    if sys.prefix == sys.base_prefix:  # not in a virtual env: nothing of ours to look for
        return f"exec {prefix}python {args}"
    exe = shlex.quote(sys.executable)
    return f'if [ -x {exe} ]; then PY={exe}; else PY=python; fi; exec {prefix}"$PY" {args}'


def run_entrypoint(opts: SubmitOptions, config_rel: str, results_dir: str) -> str:
    argv = ["-m", "bench.cli", "run", config_rel]
    for s in [*opts.overrides, f"results_dir={results_dir}"]:
        argv += ["--set", s]
    env = {"PYTHONUNBUFFERED": "1", **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
    return python_command(opts, argv, env)


def default_ray_address(job_server: str) -> str:
    """Ray Client on the head node of the job server's host (its default port)."""
    from urllib.parse import urlparse

    return f"ray://{urlparse(job_server).hostname or '127.0.0.1'}:10001"


def connect(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--address {address}: no Ray job server answers there ({first})") from None


def follow(client, job_id: str) -> str:
    """Stream the job's logs to stdout until it ends; return its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
    except Exception as e:  # the log stream can drop (proxy timeouts); the status below still decides
        log.warning("submit: log stream ended early (%s); waiting for the job to finish", e)
    return wait_until_done(client, job_id)


def wait_until_done(client, job_id: str, poll_s: float = 1.0) -> str:
    while True:
        raw = client.get_job_status(job_id)
        status = str(getattr(raw, "value", raw))
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def unpack(data: bytes, dest: Path) -> Path:
    """Unpack into a temp dir beside `dest`, then swap it in: a failed fetch leaves no partial folder."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, .. and links out of tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def fetch_results(opts: SubmitOptions, remote_dir: str, dest: Path) -> Path:
    """Pack the results on the head node in a Ray task and bring them back through the object store."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    address = opts.ray_address or default_ray_address(opts.address)
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - connection errors come in many kinds
        raise RuntimeError(f"cannot join the cluster at {address} to fetch the results "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); give --ray-address") from None
    try:
        head = next((n["NodeID"] for n in ray.nodes() if n.get("Alive") and
                     "node:__internal_head__" in n.get("Resources", {})), None)
        if head is None:
            raise RuntimeError("the cluster reports no head node")
        task = ray.remote(num_cpus=0)(pack_results).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=head, soft=False))
        packed = ray.get(task.remote(remote_dir, opts.fetch_weights))
    finally:
        ray.shutdown()
    if "error" in packed:
        raise RuntimeError(f"fetch of {remote_dir}: {packed['error']}")
    data = packed["data"]
    if len(data) != packed["size"] or hashlib.sha256(data).hexdigest() != packed["sha256"]:
        raise RuntimeError(f"fetch of {remote_dir}: the archive arrived damaged (size or SHA-256 differs)")
    path = unpack(data, dest)
    log.info("submit: fetched %s (%.1f KiB) through the object store into %s", remote_dir, len(data) / 1024, path)
    return path


def submit_experiment(opts: SubmitOptions) -> int:
    from bench.config import load_experiment

    exp = load_experiment(opts.config, opts.overrides)  # every input error before anything is sent
    wd = (opts.working_dir or project_dir()).resolve()
    try:
        config_rel = opts.config.resolve().relative_to(wd).as_posix()
    except ValueError:
        raise InputError(f"{opts.config}: the config must be inside the uploaded working dir {wd} "
                         f"(or pass --working-dir)") from None
    if not PurePosixPath(opts.remote_results).is_absolute():
        raise InputError(f"--remote-results {opts.remote_results!r}: expected an absolute path on the head node")
    client = connect(opts.address)
    runtime_env = {"working_dir": str(wd), "excludes": EXCLUDES}
    entrypoint = run_entrypoint(opts, config_rel, opts.remote_results)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                               submission_id=f"rerank-bench-{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
                                             f"-{os.getpid()}",
                               metadata={"rerank-bench": "run", "experiment": exp.name, "config_hash": exp.hash()})
    print(f"submitted {exp.name} as job {job_id} to {opts.address}", flush=True)
    log.info("submit: entrypoint %s", entrypoint)
    if not opts.wait:
        return 0
    started = time.time()
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(f"stopped following; job {job_id} keeps running (ray job stop --address {opts.address} {job_id})",
              file=sys.stderr)
        return 130
    print(f"job {job_id}: {status} after {time.time() - started:.0f}s", flush=True)
    if status != "SUCCEEDED":
        return 1
    if opts.fetch is not None:
        remote_dir = str(PurePosixPath(opts.remote_results) / exp.name)
        try:
            path = fetch_results(opts, remote_dir, Path(opts.fetch) / exp.name)
        except RuntimeError as e:
            print(f"rerank-bench: fetching results failed: {e}", file=sys.stderr)
            return 1
        print(f"results fetched to {path}", flush=True)
    return 0
