"""`rerank-bench submit` against a real multi-process, two-node Ray cluster on loopback.

The cluster follows DESIGN.md's verified recipe: `ray start --head` bound to 127.0.0.1, a worker
node joining through the machine's own host name (which /etc/hosts resolves to 127.0.0.1),
each node with its own --temp-dir, every port chosen free, token auth off. The nodes are
stopped by their process groups (never `ray stop`, which would kill other users' clusters).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def worker_port_range(width: int = 40) -> tuple[int, int]:
    """A block of free ports for a node's worker processes (away from Ray's default 10002-19999)."""
    import random

    for _ in range(200):
        base = random.randrange(30000, 60000 - width)
        try:
            for p in range(base, base + width):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base, base + width - 1
        except OSError:
            continue
    raise RuntimeError("no free port block")


class LoopbackCluster:
    """A head node and worker nodes, each `ray start --block` in its own process group."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.gcs_port, self.dashboard_port = free_ports(2)
        self.host = socket.gethostname()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], env: dict) -> None:
        ports = free_ports(6)
        lo, hi = worker_port_range()
        temp = Path(tempfile.mkdtemp(prefix=f"ray-{name}-", dir="/tmp"))  # short: Ray's socket paths are limited
        self.temps = getattr(self, "temps", []) + [temp]
        cmd = [RAY, "start", "--block", "--num-cpus=1", f"--temp-dir={temp}",
               f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
               f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
               f"--metrics-export-port={ports[4]}", f"--runtime-env-agent-port={ports[5]}",
               f"--min-worker-port={lo}", f"--max-worker-port={hi}", "--disable-usage-stats", *args]
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self, workers: int = 1, timeout: float = 180) -> "LoopbackCluster":
        (client_port,) = free_ports(1)
        self.client = f"ray://127.0.0.1:{client_port}"
        self._start("head", ["--head", f"--port={self.gcs_port}", "--node-ip-address=127.0.0.1",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                             f"--ray-client-server-port={client_port}"],
                    {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        self._wait_for_nodes(1, timeout)
        for i in range(workers):
            # multi-node needs the flag on, and an address by host name, not 127.0.0.1 (Ray would
            # rewrite that to the eth0 address and hang)
            self._start(f"worker{i}", [f"--address={self.host}:{self.gcs_port}"],
                        {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"})
        self._wait_for_nodes(1 + workers, timeout)
        return self

    def _wait_for_nodes(self, n: int, timeout: float) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a ray node exited early ({p.args[2:4]}); logs in {self.root}")
            try:
                nodes = httpx.get(f"{self.dashboard}/nodes?view=summary", timeout=5).json()
                alive = [x for x in nodes["data"]["summary"] if x.get("raylet", {}).get("state") == "ALIVE"]
                if len(alive) >= n:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(1)
        raise RuntimeError(f"{n} Ray nodes not alive after {timeout:.0f}s; logs in {self.root}")

    def stop(self) -> None:
        """Workers first, then the head: SIGTERM each process group, SIGKILL what remains."""
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5  # then SIGKILL for what ignored SIGTERM
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        # `ray start --block` children (gcs_server, raylet, dashboard) share its process group,
        # and some ignore SIGTERM: whatever is left of our groups gets SIGKILL.
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for t in getattr(self, "temps", []):
            shutil.rmtree(t, ignore_errors=True)


def test_host_name_resolves_to_loopback():
    """The recipe's precondition: the worker reaches the head through this host name."""
    assert socket.gethostbyname(socket.gethostname()).startswith("127.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Ray gives a starting node a fixed 30 s to register; on a machine loaded by other work that
    # can run out, so a failed start is retried once on fresh ports.
    for attempt in range(2):
        c = LoopbackCluster(tmp_path_factory.mktemp("cluster"))
        try:
            c.start(workers=1)
            break
        except RuntimeError:
            c.stop()
            if attempt == 1:
                raise
    try:
        yield c
    finally:
        c.stop()


def test_submit_quickstart_to_a_two_node_cluster_and_fetch_the_leaderboard(cluster, tmp_path):
    """configs/quickstart.yaml, unchanged but for size overrides, runs as a Ray Job and comes back."""
    fetch = tmp_path / "fetched"
    remote = tmp_path / "head-results"
    r = run_cli("submit", "configs/quickstart.yaml", "--address", cluster.dashboard, "--fetch", fetch,
                "--remote-results", remote, "--ray-address", cluster.client,
                # small enough for 2 cores: zero-shot only (no training grid / SHAP / LLM reasons),
                # a tiny model in 2 actors (one per node), 12 queries
                "--set", "train=null", "--set", "explain=null", "--set", "reason=null",
                "--set", "rerank.systems.0.model=tiny-qwen2", "--set", "rerank.systems.0.max_length=256",
                "--set", "data.0.max_queries=12",
                timeout=600, env={"RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SUCCEEDED" in r.stdout
    # streamed job logs carry `rerank-bench run`'s closing table and results line
    assert "| BM25" in r.stdout and "results: " in r.stdout, r.stdout[-3000:]
    board = fetch / "quickstart" / "leaderboard.md"
    assert board.is_file(), sorted(p.name for p in fetch.rglob("*"))
    text = board.read_text()
    assert "BM25" in text and "smollm2-135m-zeroshot" in text
    for name in ("leaderboard.csv", "leaderboard.json", "config.resolved.json", "per_query.csv"):
        assert (fetch / "quickstart" / name).is_file(), name
    # the fetched copy is the head node's results, byte for byte, brought through the object store
    assert text == (remote / "quickstart" / "leaderboard.md").read_text()
    assert "through the object store" in r.stderr


def test_submit_rejects_bad_input_before_sending(tmp_path, write_config):
    outside = write_config({"name": "x", "data": [{"name": "d", "loader": "demo"}]})
    r = run_cli("submit", outside, "--address", "http://127.0.0.1:9")
    assert r.returncode == 2 and "inside the uploaded working dir" in r.stderr
    r = run_cli("submit", "configs/quickstart.yaml", "--address", "http://127.0.0.1:9")
    assert r.returncode == 2 and "--address http://127.0.0.1:9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("submit", "configs/quickstart.yaml", "--address", "http://127.0.0.1:9", "--set", "rerank.depth=0")
    assert r.returncode == 2 and "rerank.depth" in r.stderr
