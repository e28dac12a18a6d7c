"""Start or join a Ray cluster: local by default, an address from config or RAY_ADDRESS."""
from __future__ import annotations

import logging
import os

from bench.config import RayConfig

log = logging.getLogger("bench")

# Environment every worker gets: one BLAS thread per CPU slot (oversubscription made trl steps
# up to 100x slower on 2 cores), offline hub, our model cache.
WORKER_ENV_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "RERANK_BENCH_CACHE", "OPENAI_BASE_URL")


def worker_env() -> dict[str, str]:
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ})
    return env


def ensure_ray(cfg: RayConfig | None = None):
    """Connect to the configured cluster, or start a local one bound to loopback."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind to 127.0.0.1
    import ray

    if ray.is_initialized():
        return ray
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": worker_env()}
    if address:
        log.info("ray: joining cluster at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private loopback cluster
        ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=True, configure_logging=False)
        log.info("ray: started a local cluster with %s CPUs", ray.cluster_resources().get("CPU"))
    return ray
