"""Start or join a Ray cluster: local by default, an address from config or RAY_ADDRESS."""
from __future__ import annotations

import logging
import os

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from bench.config import RayConfig

log = logging.getLogger("bench")

# Environment every worker gets: one BLAS thread per CPU slot (oversubscription made trl steps
# up to 100x slower on 2 cores), offline hub, our model cache.
WORKER_ENV_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "RERANK_BENCH_CACHE", "OPENAI_BASE_URL")


def worker_env() -> dict[str, str]:
    from bench.console import QUIET_ENV

    env = {"OMP_NUM_THREADS": "1", **QUIET_ENV}
    env.update({k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ})
    return env


def ensure_ray(cfg: RayConfig | None = None):
    """Connect to the configured cluster, or start a local one bound to loopback."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind to 127.0.0.1
    import ray

    if ray.is_initialized():
        return ray
    from bench.console import QUIET_ENV, capture_ray_worker_output

    for key, value in QUIET_ENV.items():  # read by the driver-side of Ray too (log dedup)
        os.environ.setdefault(key, value)
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": worker_env()}
    if address:
        log.info("ray: joining the cluster at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private loopback cluster
        _start_local(ray, cfg, runtime_env)
        log.debug("ray: started a local cluster with %s CPUs", ray.cluster_resources().get("CPU"))
    capture_ray_worker_output()  # worker output to the log file, cell events to the console
    return ray


@retry(stop=stop_after_attempt(3), wait=wait_fixed(2), retry=retry_if_exception_type(Exception), reraise=True,
       before_sleep=lambda state: log.warning("ray: local start failed (%s); retrying", state.outcome.exception()))
def _start_local(ray, cfg: RayConfig, runtime_env: dict) -> None:
    """Start a local node. Retried: on an overloaded machine the raylet can miss Ray's fixed
    start-up deadline, and a second attempt usually succeeds."""
    try:
        ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=True, configure_logging=False)
    except Exception:
        ray.shutdown()
        raise
