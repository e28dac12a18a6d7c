"""The data plane: scoring and KernelSHAP on Ray Data, one mechanism for every system of a run.

Rows are tiny (which system, which query, which item); the texts travel once through the object
store and each worker looks them up. `map_batches` runs a callable class over an actor pool
(`concurrency`, `num_cpus` / `num_gpus`, `batch_size`); each actor loads a system's scorer once
and keeps it while consecutive rows ask for the same system (rows come sorted by system), so a
run with many systems pays process start-up and imports once. Ray Data streams batches from the
row source through the actors to the driver, which only collects (row id, score) results.

Fault tolerance is Ray Data's: its actors are started with `max_restarts=-1` and
`max_task_retries=-1`, so a worker process that dies is replaced and its unfinished batches are
run again; a batch's output only counts once it is complete, so every row comes back exactly
once (tests/test_plane.py kills a worker with SIGKILL in the middle of a stage).

Two tasks run on the plane:
- `score`: rows (system, qid, docid) -> score, and whether the query / item was cut to fit;
- `explain`: rows (system, qid, docid) -> every configured explainer's attributions of that item
  (`bench.explain.item.explain_one`, i.e. `bench.explain.explainers.explain_pair`, with the actor's
  loaded scorer: one model load per actor and system, whatever the number of explainers), or, for a
  row whose docid lists a query's candidates (`RANKING_ROW` + ids joined by `|`), RankingSHAP of that
  ranking (`bench.explain.item.explain_query_ranking`); one row per batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

log = logging.getLogger("bench")

RANKING_ROW = "ranking:"  # an explain row whose docid is "ranking:" + candidate ids joined by "|"


@dataclass(frozen=True)
class PlaneResources:
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 256  # rows per Ray Data batch (scoring sub-batches come from the system's spec)


class PlaneWorker:
    """A Ray Data callable class: loads scorers lazily (one at a time), scores or explains rows."""

    def __init__(self, specs: list, texts: list, task: str, task_cfg: Any = None, seed: int = 0, threads: int = 1):
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        self.specs, self.task, self.task_cfg, self.seed = specs, task, task_cfg, seed
        self.queries, self.items = ray.get(texts[0]), ray.get(texts[1])
        self.loaded: tuple[int, Any] | None = None

    def scorer(self, system: int):
        if self.loaded is None or self.loaded[0] != system:
            from bench.rerank.scorers import build_scorer

            self.loaded = None  # free the previous model before loading the next
            self.loaded = (system, build_scorer(self.specs[system]))
        return self.loaded[1]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        systems = batch["system"]
        if self.task == "explain":
            return self._explain(batch)
        out = {"row": batch["row"], "score": np.zeros(len(systems), dtype=np.float32),
               "query_cut": np.zeros(len(systems), dtype=bool), "item_cut": np.zeros(len(systems), dtype=bool)}
        for system in np.unique(systems):
            idx = np.flatnonzero(systems == system)
            scored = self.scorer(int(system)).score_pairs([self.queries[q] for q in batch["qid"][idx]],
                                                          [self.items[d] for d in batch["docid"][idx]])
            out["score"][idx], out["query_cut"][idx], out["item_cut"][idx] = (scored.scores, scored.query_cut,
                                                                              scored.item_cut)
        return out

    def _explain(self, batch):
        import json

        from bench.explain.item import explain_one, explain_query_ranking

        results = []
        for i in range(len(batch["row"])):
            scorer = self.scorer(int(batch["system"][i]))
            qid, docid = str(batch["qid"][i]), str(batch["docid"][i])
            try:
                if docid.startswith(RANKING_ROW):
                    texts = [self.items[d] for d in docid[len(RANKING_ROW):].split("|")]
                    res = explain_query_ranking(scorer, self.queries[qid], texts, self.task_cfg, self.seed, qid=qid)
                else:
                    res = explain_one(scorer, self.queries[qid], self.items[docid], self.task_cfg, self.seed, qid=qid)
            except Exception as e:  # noqa: BLE001 - one broken item must not lose the others
                log.exception("explain: %s/%s failed", qid, docid)
                res = {"status": "error", "message": f"{type(e).__name__}: {e}", "topk": [], "words": [],
                       "word_values": [], "tokens": [], "token_values": None, "erasure": {}, "explainers": {}}
            results.append(json.dumps(res))
        return {"row": batch["row"], "result": np.array(results, dtype=object)}


def _configure_ray_data() -> None:
    import ray.data

    from bench.console import quiet_libraries

    quiet_libraries()  # ray.data sets up its own console handlers when first imported
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar of its own per stage
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False


def run_plane(specs: list, rows: list[dict], queries: dict[str, str], items: dict[str, str], task: str,
              resources: PlaneResources, *, task_cfg: Any = None, seed: int = 0, desc: str = "",
              unit: str = "pair") -> Iterable[dict[str, np.ndarray]]:
    """Stream `rows` through the actor pool; yields result batches (each with the rows' `row` ids)."""
    import ray
    import ray.data
    from tqdm.auto import tqdm

    from bench.console import progress_enabled

    if not rows:
        return
    _configure_ray_data()
    texts = [ray.put(queries), ray.put(items)]
    n_actors = max(1, min(resources.actors, len(rows)))
    blocks = len(rows) if task == "explain" else max(n_actors * 4, len(rows) // max(resources.batch_size, 1))
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), blocks))
    ds = ds.map_batches(PlaneWorker, fn_constructor_kwargs={"specs": specs, "texts": texts, "task": task,
                                                            "task_cfg": task_cfg, "seed": seed,
                                                            "threads": int(max(1, resources.cpus_per_actor))},
                        batch_size=resources.batch_size if task == "score" else 1, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=resources.cpus_per_actor,
                        num_gpus=resources.gpus_per_actor or None, zero_copy_batch=True)
    with tqdm(total=len(rows), desc=desc, unit=unit, mininterval=1, disable=not progress_enabled(),
              leave=False) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            bar.update(len(batch["row"]))
            yield batch


def score_rows(specs: list, rows: list[dict], queries: dict[str, str], items: dict[str, str],
               resources: PlaneResources, desc: str = "") -> dict[str, np.ndarray]:
    """Scores of rows `{system, qid, docid}` (system = index into `specs`), in row order."""
    n = len(rows)
    for i, r in enumerate(rows):
        r["row"] = i
    scores = np.full(n, np.nan, dtype=np.float32)
    query_cut, item_cut = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=np.int32)
    for batch in run_plane(specs, rows, queries, items, "score", resources, desc=desc):
        idx = batch["row"].astype(np.int64)
        scores[idx], query_cut[idx], item_cut[idx] = batch["score"], batch["query_cut"], batch["item_cut"]
        np.add.at(seen, idx, 1)
    if n and (seen != 1).any():  # exactly once, also after a worker was killed and its batches retried
        raise RuntimeError(f"data plane returned {int((seen == 0).sum())} rows never and "
                           f"{int((seen > 1).sum())} rows more than once")
    return {"score": scores, "query_cut": query_cut, "item_cut": item_cut}


def explain_rows(specs, rows: list[dict], queries: dict[str, str], items: dict[str, str], explain_cfg, seed: int,
                 resources: PlaneResources, desc: str = "") -> list[dict]:
    """Explanations of rows `{system, qid, docid}` (system = index into `specs`; one spec: rows may leave it
    out), in row order. Rows are sent sorted by system, so an actor loads each system's scorer once."""
    import json

    specs = specs if isinstance(specs, list) else [specs]
    for i, r in enumerate(rows):
        r.setdefault("system", 0)
        r["row"] = i
    ordered = sorted(rows, key=lambda r: (r["system"], r["row"]))
    results: list[dict | None] = [None] * len(rows)
    done = 0
    for batch in run_plane(specs, ordered, queries, items, "explain", resources, task_cfg=explain_cfg, seed=seed,
                           desc=desc, unit="item"):
        for i, res in zip(batch["row"], batch["result"]):
            results[int(i)] = json.loads(res)
            done += 1
            log.debug("%s: %d/%d rows explained (%s, %s, %.1fs)", desc or "explain", done, len(rows),
                      specs[rows[int(i)]["system"]].name, results[int(i)].get("status"),
                      results[int(i)].get("seconds") or 0.0)  # the log file's progress (no bar off a terminal)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"data plane returned no attribution for {len(missing)} items")
    return results  # type: ignore[return-value]


def worker_pids(root: int | None = None) -> list[int]:
    """Pids of data-plane worker processes (process title `ray::MapWorker(MapBatches(PlaneWorker))`),
    on this machine or among the descendants of `root` (a driver that started its own local cluster)."""
    import psutil

    if root is not None:
        try:
            procs = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
    else:
        procs = list(psutil.process_iter())
    pids = []
    for proc in procs:
        try:
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "MapWorker" in cmd and "PlaneWorker" in cmd:
            pids.append(proc.pid)
    return sorted(pids)
