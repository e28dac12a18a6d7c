"""Serving throughput and latency: `POST /rerank` with and without `@serve.batch`, side by side.

One Ray Serve instance on loopback runs two copies of the same app (tiny-qwen2, one replica,
one CPU each): `/batched` merges up to 16 concurrent requests into one scorer call,
`/unbatched` has max_batch_size 1. Closed-loop clients (1, 8, 32 at once) each send a query
with the demo's 10 candidates and wait for the answer before sending the next; the count of
requests and the time per level are bounded. Every request must come back 200 with all its
candidates ranked; a lost or failed request fails the benchmark. The two modes are measured
A-B-B-A at each level so that changes in machine load during the run affect both alike.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench")

CONCURRENCY = (1, 8, 32)
REQUESTS_PER_LEVEL = {1: 40, 8: 96, 32: 192}
LEVEL_TIME_LIMIT_S = 90.0
MODEL = {"name": "tiny-qwen2-zeroshot", "model": "tiny-qwen2", "prompt": "chat", "batch_size": 64, "max_length": 256}
MODES = {"batched": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
         "unbatched": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requests() -> list[dict]:
    from bench.data.io import read_jsonl
    from bench.data.loaders import demo_path

    out = []
    for _, row in read_jsonl(demo_path()):
        out.append({"query": row["query"], "candidates": [{"id": it["docid"], "text": f"{it['title']}\n{it['summary']}"}
                                                          for it in row["items"][:10]]})
    return out


async def _load(url: str, bodies: list[dict], clients: int, total: int, time_limit: float) -> dict:
    """`clients` closed-loop users share `total` requests; stop sending after `time_limit`."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    sent = 0
    started = time.perf_counter()

    async def user(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() - started < time_limit:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=body)
                ok = r.status_code == 200 and len(r.json()["results"]) == len(body["candidates"])
                if not ok:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                ok = False
                failures.append(f"{type(e).__name__}: {e}")
            if ok:
                latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*[user(client) for _ in range(clients)])
    return {"sent": sent, "latencies": latencies, "failures": failures, "seconds": time.perf_counter() - started}


def _summary(clients: int, parts: list[dict]) -> dict:
    """Requests/s over the parts' summed wall time; latency percentiles over all their requests."""
    wall = sum(p["seconds"] for p in parts)
    lat = np.asarray([x for p in parts for x in p["latencies"]]) * 1000
    sent = sum(p["sent"] for p in parts)
    failures = [f for p in parts for f in p["failures"]]
    return {"clients": clients, "requests": sent, "ok": len(lat), "failed": len(failures),
            "lost": sent - len(lat) - len(failures), "seconds": round(wall, 3),
            "requests_per_s": round(len(lat) / wall, 3) if wall else 0.0,
            "pairs_per_s": round(10 * len(lat) / wall, 2) if wall else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "first_failures": failures[:3]}


def run(out_dir: Path) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ray import serve

    from bench.cluster import ensure_ray
    from bench.config import RayConfig, ScorerSpec
    from bench.serve.app import build_app
    from bench.serve.config import ServeConfig

    ray = ensure_ray(RayConfig(num_cpus=2))
    port = _free_port()
    spec = ScorerSpec(**MODEL)
    bodies = _requests()
    results: dict[str, list[dict]] = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for mode, batching in MODES.items():
            cfg = ServeConfig(port=port, cpus_per_replica=1.0, max_ongoing_requests=64, **batching)
            serve.run(build_app(spec, cfg, name=f"rerank-{mode}"), name=mode, route_prefix=f"/{mode}")
        urls = {mode: f"http://127.0.0.1:{port}/{mode}/rerank" for mode in MODES}
        for mode, url in urls.items():  # warm-up: first forward passes, connections, proxies
            asyncio.run(_load(url, bodies, 4, 8, 60))
        for clients in CONCURRENCY:
            # Side by side in A-B-B-A order, half the requests per part: a drift in machine load
            # during the level (other processes) weighs on both modes alike.
            parts: dict[str, list[dict]] = {m: [] for m in MODES}
            for mode in ["batched", "unbatched", "unbatched", "batched"]:
                parts[mode].append(asyncio.run(_load(urls[mode], bodies, clients, REQUESTS_PER_LEVEL[clients] // 2,
                                                     LEVEL_TIME_LIMIT_S / 2)))
            for mode in MODES:
                r = _summary(clients, parts[mode])
                log.info("serve perf: %-9s %2d clients: %6.1f req/s  p50 %7.1f ms  p99 %7.1f ms  (%d ok, %d failed)",
                         mode, clients, r["requests_per_s"], r["p50_ms"] or -1, r["p99_ms"] or -1, r["ok"], r["failed"])
                results.setdefault(mode, []).append(r)
    finally:
        serve.shutdown()
        ray.shutdown()
    failed = sum(r["failed"] + r["lost"] for rs in results.values() for r in rs)
    if failed:
        raise RuntimeError(f"serve perf: {failed} requests failed or were lost: {results}")
    speedup = {str(c): round(b["requests_per_s"] / u["requests_per_s"], 3)
               for c, b, u in zip(CONCURRENCY, results["batched"], results["unbatched"]) if u["requests_per_s"]}
    return {"what": "POST /rerank with 10 candidates, tiny-qwen2, 1 replica x 1 CPU per mode, loopback HTTP",
            "machine_cpus": os.cpu_count(), "model": MODEL, "modes": MODES,
            "results": results, "batched_over_unbatched_requests_per_s": speedup,
            "requests_failed_or_lost": failed}
