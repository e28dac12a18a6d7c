"""The data plane's cost, measured side by side in one run on BEIR SciFact's BM25 top-100.

overhead   a tiny preset scoring 30,000 (query, abstract) pairs: the stage (`bench.plane.score_rows`,
           Ray Data actors) vs the same scorer called in-process on the same batches. Pairs/s are
           steady-state (after the first batch came back); start-up is reported apart.
           Targets: stage / in-process >= 0.8 with one actor; 1 -> 2 actors scaling efficiency >= 0.8.
floor      SmolLM2-135M on 500 pairs: the stage's marginal seconds per pair (two runs, 16 pairs and all,
           so start-up and model load cancel) vs the batched forward floor (the model's forward alone
           over the same padded batches: no prompt fitting, tokenising or Ray). Target <= 1.25.
growth     stage wall time for 1k, 3k, 10k and 30k pairs (tiny preset, one actor): a line fitted by
           least squares; per-pair cost = its slope, start-up = its intercept; R^2 shows linearity.

Env: RB_PERF_RERANK_PAIRS (30000), RB_PERF_RERANK_FLOOR_PAIRS (500), RB_PERF_RERANK_TINY (tiny-llama),
RB_PERF_SHARED_DATA (../shared/data).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[2]


def _scifact_pairs(n: int) -> tuple[dict, dict, list[tuple[str, str]]]:
    from bench.config import BeirSource, RetrieveConfig
    from bench.data.loaders import load_beir
    from bench.retrieve.bm25 import bm25_run

    data = Path(os.environ.get("RB_PERF_SHARED_DATA", ROOT.parent / "shared" / "data"))
    col = load_beir(BeirSource(name="scifact", loader="beir", path=data / "beir" / "scifact"))
    run = bm25_run(col, RetrieveConfig(depth=100))
    pairs = [(q, d) for q in sorted(col.queries) for d, _ in run.ranked(q, 100)]
    reps = -(-n // len(pairs))  # SciFact's top-100 gives ~30k pairs; repeat it for larger sizes
    pairs = (pairs * reps)[:n]
    return col.queries, {d: col.corpus[d].full_text() for d in col.corpus}, pairs


def _rows(pairs):
    return [{"system": 0, "qid": q, "docid": d} for q, d in pairs]


def _stage(spec, pairs, queries, items, actors: int, batch: int) -> dict:
    """Wall time of the plane over `pairs`, with the time to its first result batch (start-up)."""
    from bench.plane import PlaneResources, run_plane

    rows = _rows(pairs)
    for i, r in enumerate(rows):
        r["row"] = i
    t0 = time.perf_counter()
    first, got = None, 0
    for out in run_plane([spec], rows, queries, items, "score", PlaneResources(actors, 1.0, 0.0, batch)):
        got += len(out["row"])
        if first is None:
            first = (time.perf_counter() - t0, got)
    wall = time.perf_counter() - t0
    steady = (got - first[1]) / max(wall - first[0], 1e-9)
    return {"pairs": got, "wall_s": round(wall, 2), "startup_s": round(first[0], 2),
            "steady_pairs_per_s": round(steady, 1), "pairs_per_s": round(got / wall, 1)}


def _in_process(spec, pairs, queries, items, batch: int) -> dict:
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(spec)
    scorer.score([queries[pairs[0][0]]], [items[pairs[0][1]]])  # warm-up
    t0 = time.perf_counter()
    for start in range(0, len(pairs), batch):  # the stage's batches, in the same order
        chunk = pairs[start:start + batch]
        scorer.score_pairs([queries[q] for q, _ in chunk], [items[d] for _, d in chunk])
    wall = time.perf_counter() - t0
    return {"pairs": len(pairs), "wall_s": round(wall, 2), "pairs_per_s": round(len(pairs) / wall, 1)}


def _floor(spec, pairs, queries, items) -> dict:
    """The model's batched forward alone, over the inputs the scorer would build (fitted, tokenised, padded)."""
    import torch

    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(spec)
    fitted = [scorer.fit(queries[q], items[d]) for q, d in pairs]
    enc = scorer.encode([f.input for f in fitted])
    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    batches = []
    for start in range(0, len(order), spec.batch_size):
        idx = order[start:start + spec.batch_size]
        batches.append(scorer.tokenizer.pad({k: [enc[k][i] for i in idx] for k in ("input_ids", "attention_mask")},
                                            return_tensors="pt"))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            scorer.forward(b)
    wall = time.perf_counter() - t0
    return {"pairs": len(pairs), "wall_s": round(wall, 2), "seconds_per_pair": round(wall / len(pairs), 5)}


def run(out_dir: Path) -> dict:
    import torch

    from bench.cluster import ensure_ray
    from bench.config import RayConfig, ScorerSpec

    torch.set_num_threads(1)  # one core, like one actor
    n = int(os.environ.get("RB_PERF_RERANK_PAIRS", "30000"))
    n_floor = int(os.environ.get("RB_PERF_RERANK_FLOOR_PAIRS", "500"))
    tiny = ScorerSpec(name="tiny", model=os.environ.get("RB_PERF_RERANK_TINY", "tiny-llama"), batch_size=32,
                      max_length=512, prompt="plain")
    try:
        queries, items, pairs = _scifact_pairs(n)
    except Exception as e:  # noqa: BLE001 - no shared data here: say so instead of measuring something else
        return {"skipped": f"BEIR SciFact not available ({type(e).__name__}: {e})"}
    batch = 256
    ensure_ray(RayConfig(num_cpus=2))
    log.info("rerank perf: %d SciFact pairs, %s", len(pairs), tiny.model)
    inproc = _in_process(tiny, pairs, queries, items, batch)
    one = _stage(tiny, pairs, queries, items, 1, batch)
    two = _stage(tiny, pairs, queries, items, 2, batch)
    growth = {}
    for size in (1000, 3000, 10000):
        growth[size] = _stage(tiny, pairs[:size], queries, items, 1, batch)["wall_s"]
    growth[len(pairs)] = one["wall_s"]
    x, y = np.array(list(growth)), np.array(list(growth.values()))
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / ((y - y.mean()) ** 2).sum()

    smol = ScorerSpec(name="smollm2", model="smollm2-135m-instruct", batch_size=16, max_length=192, prompt="chat")
    few = pairs[:n_floor]
    log.info("rerank perf: SmolLM2 floor on %d pairs", len(few))
    floor = _floor(smol, few, queries, items)
    # the stage's marginal cost per pair: two runs (a few pairs, then all), so start-up and model load cancel
    small = _stage(smol, few[:16], queries, items, 1, 16)
    smol_stage = _stage(smol, few, queries, items, 1, 16)
    stage_per_pair = (smol_stage["wall_s"] - small["wall_s"]) / (len(few) - 16)
    return {
        "collection": "BEIR SciFact, BM25 top-100 per query", "pairs": len(pairs), "tiny_model": tiny.model,
        "plane_batch_size": batch, "forward_batch_size": tiny.batch_size, "max_length": tiny.max_length,
        "in_process": inproc, "stage_1_actor": one, "stage_2_actors": two,
        "stage_vs_inprocess": round(one["steady_pairs_per_s"] / inproc["pairs_per_s"], 3),
        "target_stage_vs_inprocess": 0.8,
        "scaling_efficiency_2_actors": round(two["steady_pairs_per_s"] / (2 * one["steady_pairs_per_s"]), 3),
        "target_scaling_efficiency_2_actors": 0.8,
        "floor": {"model": "smollm2-135m-instruct", "max_length": smol.max_length, "batched_forward": floor,
                  "stage_1_actor": smol_stage, "stage_1_actor_16_pairs": small,
                  "stage_seconds_per_pair_marginal": round(stage_per_pair, 5)},
        "smollm2_vs_floor": round(stage_per_pair / floor["seconds_per_pair"], 3), "target_smollm2_vs_floor": 1.25,
        "growth": {"wall_s": {str(k): v for k, v in growth.items()}, "per_pair_s": round(float(slope), 6),
                   "startup_s": round(float(intercept), 2), "r2": round(float(r2), 4)},
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }
