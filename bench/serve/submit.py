"""`rerank-bench submit`: an experiment as a Ray Job on a running cluster, logs streamed, results fetched.

1. The config (with its --set overrides) is validated here, before anything is sent.
2. The project directory is uploaded as the job's `working_dir` (without .venv, results, .git,
   caches), and the job runs `python -m bench.cli run CONFIG --set ... --set results_dir=REMOTE`:
   exactly what `rerank-bench run` does on a laptop, with results at an absolute path on the
   head node (where Ray runs job entrypoints that ask for no resources).
3. Logs are streamed through the job server (`tail_job_logs`) until the job ends.
4. Fetching: the results are on the head node's disk, which the client cannot read. A second,
   tiny job (plain `python -c`, no upload) tars REMOTE/<experiment>, and prints it base64-encoded
   between marker lines; the client reads that job's logs, checks size and SHA-256, and unpacks
   it atomically into DIR/<experiment>. Only the job-server port (8265) is needed, so this works
   the same on a multi-node cloud cluster as on loopback. Model weights are left out by default
   (they belong in train.storage_path, s3:// or gs://).
"""
from __future__ import annotations

import asyncio
import base64
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
BEGIN, END, FAIL = "RERANK-BENCH-ARCHIVE-BEGIN", "RERANK-BENCH-ARCHIVE-END", "RERANK-BENCH-FETCH-ERROR"
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

# The fetch job's program: tar the results folder and print it base64 between markers.
# Standard library only, so it runs with any python on the head node.
_PACK = r"""
import base64, hashlib, io, os, sys, tarfile
root, weights = sys.argv[1], sys.argv[2] == "1"
skip = tuple(sys.argv[3].split(","))
if not os.path.isdir(root):
    print("%(fail)s no results folder at " + root, flush=True); sys.exit(3)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    tar.add(root, arcname=".", filter=lambda ti: None if (not weights and ti.isfile() and ti.name.endswith(skip)) else ti)
data = buf.getvalue()
if len(data) > %(limit)d:
    print("%(fail)s archive of %%d bytes is above the %(limit)d-byte limit" %% len(data), flush=True); sys.exit(4)
print("%(begin)s", len(data), hashlib.sha256(data).hexdigest(), flush=True)
enc = base64.b64encode(data).decode()
for i in range(0, len(enc), 8192):
    sys.stdout.write(enc[i:i + 8192] + "\n")
print("%(end)s", flush=True)
""" % {"fail": FAIL, "begin": BEGIN, "end": END, "limit": MAX_ARCHIVE_BYTES}


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


def fetch_entrypoint(opts: SubmitOptions, remote_dir: str) -> str:
    return python_command(opts, ["-c", _PACK, remote_dir, "1" if opts.fetch_weights else "0",
                                 ",".join(WEIGHT_SUFFIXES)])


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


def decode_archive(logs: str) -> bytes:
    """The tar.gz bytes printed by the fetch job, checked against its size and SHA-256."""
    lines = logs.splitlines()
    for line in lines:
        if line.startswith(FAIL):
            raise RuntimeError(line[len(FAIL):].strip())
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(BEGIN + " "))
        stop = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == END)
    except StopIteration:
        raise RuntimeError("the fetch job's logs hold no complete archive") from None
    _, size, digest = lines[start].split()
    data = base64.b64decode("".join(line.strip() for line in lines[start + 1:stop]))
    if len(data) != int(size) or hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError(f"archive damaged in transfer ({len(data)} bytes, expected {size})")
    return data


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


def fetch_results(client, opts: SubmitOptions, remote_dir: str, dest: Path) -> Path:
    job_id = client.submit_job(entrypoint=fetch_entrypoint(opts, remote_dir),
                               metadata={"rerank-bench": "fetch", "path": remote_dir})
    status = wait_until_done(client, job_id, poll_s=0.5)
    logs = client.get_job_logs(job_id)
    try:
        data = decode_archive(logs)
    except RuntimeError as e:
        raise RuntimeError(f"fetch of {remote_dir} (job {job_id}, {status}): {e}") from None
    path = unpack(data, dest)
    log.info("submit: fetched %s (%.1f KiB) into %s", remote_dir, len(data) / 1024, path)
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
            path = fetch_results(client, opts, remote_dir, Path(opts.fetch) / exp.name)
        except RuntimeError as e:
            print(f"rerank-bench: fetching results failed: {e}", file=sys.stderr)
            return 1
        print(f"results fetched to {path}", flush=True)
    return 0
