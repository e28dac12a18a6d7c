"""Cost of each explainer per item, and its overhead over the bare batched forward of the same rows.

For every explainer of `bench.explain.explainers` (and RankingSHAP on one query), side by side in
one process, same model, items and seed:
- `shipped`: the explainer as the library runs it (`run_explainer` / `explain_ranking`);
- `floor`: the model rows it spent, replayed without the explainer. Perturbation explainers: the
  recorded (query, item) texts of every call, scored again in the same batches (`Scorer.score`).
  Integrated gradients: the same number of interpolated rows as one forward + backward through
  the scorer's neuron in chunks of `internal_batch_size` (the input embeddings replaced along the
  path by a hook, as Captum does), plus its forward-only rows.
overhead = shipped / floor (target <= 1.3); both wall and CPU seconds of this single-threaded
process are recorded (CPU is the robust comparison on a shared host). Each explainer first runs once on
a three-word pair, unmeasured (`first_call_seconds`: imports, shap's numba compilation), as an actor
pays it once. Faithfulness metrics are off.

Env: RB_PERF_EXPLAINERS_MODEL (default smollm2-135m-instruct), RB_PERF_EXPLAINERS_ITEMS (2),
RB_PERF_EXPLAINERS_WORDS (20: each item cut to its first N words), RB_PERF_EXPLAINERS_SAMPLES (32:
KernelSHAP coalitions, Partition max_evals, LIME samples), RB_PERF_EXPLAINERS_IG_STEPS (16),
RB_PERF_EXPLAINERS_CANDIDATES (3: RankingSHAP candidates, 0 = skip).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench")

QUERY = "hourly CO2 and CH4 mole fractions from European tall towers 2018-2022"


class RecordingScorer:
    """Forwards everything to a scorer and keeps the (queries, items) of every `score` call."""

    def __init__(self, scorer):
        self._scorer, self.calls = scorer, []

    def score(self, queries, items):
        self.calls.append((list(queries), list(items)))
        return self._scorer.score(queries, items)

    def __getattr__(self, name):
        return getattr(self._scorer, name)


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _items(n: int, words: int) -> list[str]:
    from bench.data.io import read_jsonl
    from bench.data.loaders import demo_path

    texts = []
    for _, row in read_jsonl(demo_path()):
        for it in row["items"]:
            texts.append(" ".join(f"{it.get('title', '')} {it['summary']}".split()[:words]))
    return texts[:n]


def replay(scorer, calls) -> None:
    for queries, items in calls:
        scorer.score(queries, items)


def ig_floor(scorer, pair, params, forward_rows: int) -> None:
    """The compute IG cannot avoid: n_steps interpolated rows through the neuron with a backward
    pass to the embeddings, in chunks of internal_batch_size, and its forward-only rows."""
    import torch

    from bench.explain.explainers.gradients import token_map

    tokens = token_map(scorer, pair)
    batch = {k: torch.tensor([v]) for k, v in tokens.encoding.items()}
    layer = scorer.model.get_input_embeddings()
    with torch.no_grad():
        x = layer(batch["input_ids"])
        base_ids = batch["input_ids"].clone()
        base_ids[0, torch.tensor(tokens.token_word >= 0)] = scorer.tokenizer.pad_token_id
        x0 = layer(base_ids)
    alphas = torch.linspace(0, 1, params.n_steps)
    state = {}
    hook = layer.register_forward_hook(lambda module, args, out: state["embeds"])
    try:
        for start in range(0, params.n_steps, params.internal_batch_size):
            a = alphas[start:start + params.internal_batch_size].view(-1, 1, 1)
            state["embeds"] = (x0 + a * (x - x0)).requires_grad_(True)
            rows = {k: v.expand(len(a), -1) for k, v in batch.items()}
            out = scorer.neuron(rows).float().sum()
            torch.autograd.grad(out, state["embeds"])
    finally:
        hook.remove()
    extra = max(0, forward_rows - params.n_steps)  # Captum's input / baseline rows (layer values, delta)
    if extra:
        with torch.no_grad():
            scorer.neuron({k: v.expand(extra, -1) for k, v in batch.items()})


def _summary(shipped: list[Clock], floor: list[Clock], rows: list[int], backward: list[int]) -> dict:
    wall = float(np.mean([c.wall for c in shipped]))
    cpu = float(np.mean([c.cpu for c in shipped]))
    f_wall = float(np.mean([c.wall for c in floor])) if floor else 0.0
    f_cpu = float(np.mean([c.cpu for c in floor])) if floor else 0.0
    overhead = round(wall / f_wall, 3) if f_wall > 0 else None
    overhead_cpu = round(cpu / f_cpu, 3) if f_cpu > 0 else None
    return {"evaluations_per_item": float(np.mean(rows)), "backward_evaluations_per_item": float(np.mean(backward)),
            "seconds_per_item": {"shipped": round(wall, 3), "floor_batched_forward": round(f_wall, 3)},
            "cpu_seconds_per_item": {"shipped": round(cpu, 3), "floor_batched_forward": round(f_cpu, 3)},
            "overhead": overhead, "overhead_cpu": overhead_cpu,
            "meets_target": None if overhead is None else bool(overhead <= 1.3 and overhead_cpu <= 1.3),
            "meets_target_cpu": None if overhead_cpu is None else bool(overhead_cpu <= 1.3)}


def run(out_dir: Path) -> dict:
    import captum
    import torch

    from bench.config import ScorerSpec
    from bench.explain.explainers import (PairSettings, RankingSettings, explain_ranking, explained_pair,
                                          get_explainer, run_explainer)
    from bench.explain.settings import ExplainerSpec
    from bench.rerank.scorers import build_scorer

    torch.set_num_threads(1)  # one core per explainer, as in the actors (process CPU time = compute)
    model = os.environ.get("RB_PERF_EXPLAINERS_MODEL", "smollm2-135m-instruct")
    n_items = int(os.environ.get("RB_PERF_EXPLAINERS_ITEMS", "2"))
    words = int(os.environ.get("RB_PERF_EXPLAINERS_WORDS", "20"))
    samples = int(os.environ.get("RB_PERF_EXPLAINERS_SAMPLES", "32"))
    steps = int(os.environ.get("RB_PERF_EXPLAINERS_IG_STEPS", "16"))
    n_candidates = int(os.environ.get("RB_PERF_EXPLAINERS_CANDIDATES", "3"))
    specs = [ExplainerSpec("kernel_shap", {"nsamples": samples}),
             ExplainerSpec("partition_shap", {"max_evals": samples}), ExplainerSpec("loo"),
             ExplainerSpec("integrated_gradients", {"n_steps": steps, "internal_batch_size": 8}),
             ExplainerSpec("lime", {"n_samples": samples}), ExplainerSpec("random")]
    settings = PairSettings(metrics=False, repeat_seed_offset=None)
    scorer = build_scorer(ScorerSpec(name="perf", model=model, prompt="chat", batch_size=64))
    texts = _items(max(n_items, n_candidates), words)
    scorer.score([QUERY], texts[:1])  # warm-up
    first_call = {}  # imports and shap's numba compilation, paid once per process (per actor), not per item
    warm = explained_pair(scorer, "co2 towers", "hourly carbon dioxide")
    for spec in specs:
        with Clock() as clock:
            run_explainer(scorer, warm, spec, settings, seed=0)
        first_call[spec.name] = round(clock.wall, 3)
    pair_words = []
    per: dict = {s.name: {"shipped": [], "floor": [], "rows": [], "backward": []} for s in specs}
    for text in texts[:n_items]:
        pair = explained_pair(scorer, QUERY, text)
        pair_words.append(pair.n_words)
        for spec in specs:
            recorder = RecordingScorer(scorer)
            with Clock() as shipped:
                result, _ = run_explainer(recorder, pair, spec, settings, seed=0)
            if result["status"] != "ok":
                raise RuntimeError(f"{spec.name}: {result['status']}: {result['message']}")
            with Clock() as floor:
                if spec.name == "integrated_gradients":
                    ig_floor(scorer, pair, get_explainer(spec.name).params(spec.params), result["evaluations"])
                else:
                    replay(scorer, recorder.calls)
            slot = per[spec.name]
            slot["shipped"].append(shipped)
            slot["rows"].append(result["evaluations"])
            slot["backward"].append(result["backward_evaluations"])
            if result["evaluations"]:
                slot["floor"].append(floor)
            log.info("explainers perf: %s on %d words: %d rows, shipped %.2fs (CPU %.2fs), floor %.2fs (CPU %.2fs)",
                     spec.name, pair.n_words, result["evaluations"], shipped.wall, shipped.cpu, floor.wall, floor.cpu)
    out = {"model": model, "items": n_items, "words_per_item": pair_words, "query": QUERY, "seed": 0,
           "settings": {"removal": settings.removal, "batch_size": settings.batch_size, "samples": samples,
                        "ig_steps": steps, "ig_internal_batch_size": 8},
           "explainers": {name: _summary(p["shipped"], p["floor"], p["rows"], p["backward"])
                          for name, p in per.items()},
           "first_call_seconds": first_call}
    if n_candidates >= 2:
        recorder = RecordingScorer(scorer)
        rsettings = RankingSettings(max_features=8, nsamples=16)
        with Clock() as shipped:
            res = explain_ranking(recorder, QUERY, texts[:n_candidates], rsettings, seed=0)
        with Clock() as floor:
            replay(scorer, recorder.calls)
        out["ranking_shap"] = {"candidates": n_candidates, "features": len(res["features"]), "nsamples": 16,
                               **_summary([shipped], [floor], [res["evaluations"] + res["metric_evaluations"]], [0])}
    measured = [e for e in out["explainers"].values() if e["meets_target"] is not None]
    out.update({"target_overhead": 1.3, "meets_target": all(e["meets_target"] for e in measured),
                "meets_target_cpu": all(e["meets_target_cpu"] for e in measured), "captum": captum.__version__,
                "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                "note": "one process, one torch thread; the floor replays exactly the rows each explainer scored; "
                        "the machine's load average is recorded because this host is shared"})
    return out
