"""The training grid: (model x method x training collection) cells, trained on Ray Train in lanes.

    plan()  validates the grid and builds each cell's data (bad input -> InputError, exit 2,
            before any training)
    run()   splits the cells into `max_concurrent_cells` lanes and runs each lane as one Ray Train
            run (`TorchTrainer` with the grid's ScalingConfig and FailureConfig) whose worker
            group trains the lane's cells one after the other (`bench.train.methods.train_lane`):
            start-up and imports are paid once per lane, not once per cell.

Lanes are cut from the whole plan, deterministically (a lane's name hashes its cells' keys), so
a re-run after a crash finds the same lanes and Ray Train restores each from its last
checkpoint; cells finished earlier are found in the cache by key and skipped. A PPO cell stays in
the lane of its reward-model cell, after it. A cell that fails is recorded and the others go on.

A finished cell is a cached artifact `results/<exp>/train/<key>/` (key = hash of the cell's
config, its training data, the base model and tokenizer, the global batch, the library versions
and the code version) holding `adapter/` (or `model/`), `metrics.json` (loss, held-out pairwise
accuracy before and after training, loss curve, timings) and `loss.png`. The driver copies each
cell from the lane's checkpoint as soon as the worker announces it (so an interrupted run keeps
it) and once more after the lane ends.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import __version__
from bench.artifacts import content_fingerprint, content_hash
from bench.errors import InputError, one_line
from bench.pools import interruptible_pool
from bench.data.pairs import TrainingData
from bench.train.config import METHOD_ORDER, ModelEntry, TrainConfig, method_info

log = logging.getLogger("bench")

TRAIN_CODE = ("bench.train.methods",)  # what trains a cell, in the worker: its code is part of the cell's key
METHOD_COST = {"ppo": 2.0}  # relative cost of a cell, to balance lanes (others 1)


@dataclass
class Cell:
    entry: ModelEntry
    model_dir: str
    family: str
    params: str
    method: str
    dataset: str
    name: str  # system name in the leaderboard
    data: TrainingData = field(repr=False, default_factory=dict)
    key: str = ""

    @property
    def scorer_kind(self) -> str:
        return scorer_kind(self.method, self.family)


ENCODER_FAMILIES = ("bert",)
ENCODER_METHODS = ("rm", "contrastive")


def scorer_kind(method: str, family: str) -> str:
    """The neuron that scores a cell: the method's, except that an encoder family's reward head is a cross-encoder."""
    kind = method_info(method)[2]
    return "cross-encoder" if kind == "reward-head" and family in ENCODER_FAMILIES else kind


@dataclass
class CellResult:
    cell: Cell
    status: str  # ok | failed
    error: str = ""
    path: Path | None = None
    metrics: dict = field(default_factory=dict)
    cached: bool = False


def _family_of(entry: ModelEntry, model_dir: str) -> str:
    from bench.models import PRESETS

    preset = PRESETS.get(entry.model)
    if preset is not None:
        return preset.family
    config = Path(model_dir) / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model_type", "")
    return entry.model.split("/")[-1].split("-")[0].lower()


def training_rows(method: str) -> str:
    """The cell data a method trains on: train_pairs, r2r_lists or train_items (a plugin method says which)."""
    if method in ("rm", "dpo", "contrastive"):
        return "train_pairs"
    if method.startswith("r2r-"):
        return "r2r_lists"
    if method in METHOD_ORDER:
        return "train_items"
    from bench.registry import lookup

    return lookup("methods", method).rows


def cell_name(label: str, method: str, dataset: str, n_datasets: int) -> str:
    return f"{label}-{method}" + (f"@{dataset}" if n_datasets > 1 else "")


def planned_cell_names(exp) -> list[str]:
    """The leaderboard names the grid's cells will get (for checks before anything runs)."""
    cfg: TrainConfig = exp.train
    datasets = list(cfg.datasets) or [exp.data[0].name]
    return [cell_name(e.label, m, d, len(datasets)) for d in datasets for m in cfg.methods for e in cfg.models
            if m in cfg.methods_for(e)]


def lanes_of(cells: list[Cell], n_lanes: int) -> list[list[Cell]]:
    """Deterministic lanes: a PPO cell follows its RM cell; chains go to the least-loaded lane."""
    chains: list[list[Cell]] = []
    rm_chain: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:  # cells come in METHOD_ORDER: every RM before its PPO
        if c.method == "ppo" and (c.entry.label, c.dataset) in rm_chain:
            rm_chain[(c.entry.label, c.dataset)].append(c)
            continue
        chain = [c]
        chains.append(chain)
        if c.method == "rm":
            rm_chain[(c.entry.label, c.dataset)] = chain
    lanes: list[list[Cell]] = [[] for _ in range(max(1, min(n_lanes, len(chains))))]
    load = [0.0] * len(lanes)
    for chain in sorted(chains, key=lambda ch: -sum(METHOD_COST.get(c.method, 1.0) for c in ch)):  # stable
        i = min(range(len(lanes)), key=lambda j: (load[j], j))
        lanes[i].extend(chain)
        load[i] += sum(METHOD_COST.get(c.method, 1.0) for c in chain)
    order = {c.key: i for i, c in enumerate(cells)}
    return [sorted(lane, key=lambda c: order[c.key]) for lane in lanes if lane]


def _tell_deepspeed_the_driver_has_no_gpu() -> None:
    """DeepSpeed, imported by the driver through trl/accelerate, prints "Setting accelerator to CPU"
    on the console when it finds no GPU. Make the same decision up front, for this process only
    (the workers decide on their own nodes, where a GPU may be)."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


class TrainGrid:
    def __init__(self, pipeline, cfg: TrainConfig | None = None):
        """`cfg`: the grid to plan (default the experiment's `train:`; a sweep passes its base)."""
        self.p = pipeline
        self.exp = pipeline.exp
        self.cfg: TrainConfig = cfg or pipeline.exp.train
        self.root = pipeline.out_dir / "train"
        self._lock = threading.Lock()
        self._announced: dict[str, dict] = {}
        _tell_deepspeed_the_driver_has_no_gpu()

    # ------------------------------------------------------------------ plan
    def datasets(self) -> list[str]:
        names = [s.name for s in self.exp.data]
        chosen = list(self.cfg.datasets) or names[:1]
        for n in chosen:
            if n not in names:
                raise InputError(f"train.datasets: unknown data source {n!r}; expected one of {', '.join(names)}")
        return chosen

    def _data(self, name: str) -> "TrainingData":
        from bench.data.pairs import as_records, pointwise_items, preference_pairs

        ds = self.p.dataset(name)
        run = self.p.first_stage(name).run
        train_q, valid_q = ds.splits.get("train", []), ds.splits.get("valid", [])
        d, neg = self.cfg.depth, self.cfg.negatives
        data = {"train_items": as_records(pointwise_items(ds.collection, run, train_q, d, neg)),
                "train_pairs": as_records(preference_pairs(ds.collection, run, train_q, d, negatives=neg)),
                "valid_pairs": as_records(preference_pairs(ds.collection, run, valid_q, d, negatives=neg)),
                # every judged item of the valid queries: Table 1's top-1 accuracy
                "valid_items": as_records(pointwise_items(ds.collection, run, valid_q, d, neg))}
        if any(m.startswith("r2r-") for m in self.cfg.methods):
            if getattr(self, "dry_run", False):  # `train --dry-run` asks no teacher: its lists decide the keys later
                data.update({"r2r_lists": ["(the teacher's lists, once the teacher has run)"], "r2r_texts": {},
                             "r2r_reference": []})
            else:
                data.update(self.p.teacher_data(name))
        unjudged = sum(not p["rejected_judged"] for p in data["train_pairs"])
        if unjudged:
            log.info("train data %s: %d of %d training pairs use an unjudged first-stage document as the rejected "
                     "item (train.negatives: first-stage)", name, unjudged, len(data["train_pairs"]))
        return data

    def plan(self) -> list[Cell]:
        """All cells, validated; raises InputError before any training on bad input."""
        from bench.models import model_params_label, resolve_model

        if self.cfg.deepspeed is not None and not Path(self.cfg.deepspeed).is_file():
            raise InputError(f"train.deepspeed: DeepSpeed config not found: {self.cfg.deepspeed}")
        models = []
        for i, entry in enumerate(self.cfg.models):
            try:
                model_dir = resolve_model(entry.model)
            except InputError as e:
                raise InputError(f"train.models.{i}.model: {e}") from None
            models.append((entry, model_dir))
        datasets = self.datasets()
        cells: list[Cell] = []
        for ds_name in datasets:
            data = self._data(ds_name)
            needs = {"train_items": "pointwise items", "train_pairs": "preference pairs", "r2r_lists": "teacher lists"}
            for method in self.cfg.methods:
                src = training_rows(method)
                if not data[src]:
                    raise InputError(f"train.methods: {method!r} has no training data: no {needs[src]} in the "
                                     f"train split of data source {ds_name!r} (check splits.train, or "
                                     f"train.negatives when the qrels judge relevant documents only)")
                for entry, model_dir in models:
                    if method not in self.cfg.methods_for(entry):
                        continue
                    family = _family_of(entry, model_dir)
                    if family in ENCODER_FAMILIES and method not in ENCODER_METHODS:
                        raise InputError(f"train.methods: {method!r} needs a causal LM; encoder model {entry.model!r} "
                                         f"trains as a cross-encoder ('rm') or a bi-encoder ('contrastive')")
                    if family not in ENCODER_FAMILIES and method == "contrastive":
                        raise InputError(f"train.methods: 'contrastive' trains sentence-transformers encoders; "
                                         f"{entry.model!r} is a causal LM")
                    cells.append(Cell(entry, model_dir, family, entry.params or model_params_label(entry.model),
                                      method, ds_name, cell_name(entry.label, method, ds_name, len(datasets)), data))
        by_rm = {(c.entry.label, c.dataset): c for c in cells if c.method == "rm"}
        ds_hash = self.cfg.deepspeed and content_fingerprint(Path(self.cfg.deepspeed))
        for c in cells:  # RM keys first: a PPO cell's key includes its reward model's
            if c.method != "ppo":
                c.key = self._key(c, ds_hash, None)
        for c in cells:
            if c.method == "ppo":
                c.key = self._key(c, ds_hash, by_rm[(c.entry.label, c.dataset)].key)
        return cells

    def r2r_settings(self) -> dict:
        cfg = self.exp.r2r
        return {"margin": cfg.margin, "list_temperature": cfg.list_temperature, "reason_words": cfg.reason_words,
                "passage_words": cfg.teacher.passage_words, "student_tokens": cfg.student_tokens,
                "loss_weights": cfg.loss_weights, "fixed_weights": list(cfg.fixed_weights)}

    def _key(self, c: Cell, ds_hash, rm_key) -> str:
        from bench.models import model_fingerprint
        from bench.provenance import library_versions

        h, s = self.cfg.hyper_for(c.entry), self.cfg.scaling
        from bench.codehash import code_fingerprint

        return content_hash("train", code_fingerprint(*TRAIN_CODE), __version__, c.entry.model, model_fingerprint(c.model_dir),
                            c.method, c.scorer_kind, h, self.cfg.prompt, self.cfg.depth, self.cfg.negatives,
                            h.seed if h.seed is not None else self.exp.seed,
                            # the global batch (data-parallel workers x batch x accumulation) and the device
                            {"num_workers": s.num_workers, "use_gpu": s.use_gpu},
                            content_hash(c.data), ds_hash, rm_key, library_versions("train"),
                            self.r2r_settings() if c.method.startswith("r2r-") else None)

    # ------------------------------------------------------------------ run
    def storage_path(self) -> str:
        if self.cfg.storage_path:
            sp = self.cfg.storage_path
            return sp if "://" in sp else str(Path(sp).expanduser().resolve())
        return str((self.root / "ray").resolve())

    def lane_name(self, lane: list[Cell]) -> str:
        return f"{self.exp.name}-lane-{content_hash([c.key for c in lane], length=12)}"

    def run(self, cells: list[Cell] | None = None) -> list[CellResult]:
        from bench.console import on_event

        cells = cells if cells is not None else self.plan()
        by_key = {c.key: c for c in cells}
        results: dict[str, CellResult] = {}
        for c in cells:
            if self.p.cache.is_done("train", c.key):
                results[c.key] = self._result(c, self.p.cache.path("train", c.key), cached=True)
                self.p.cache.reused.append(("train", c.key))  # counted on the stage line as cached
                log.info("train %s: state=cached", c.name)
        lanes = [lane for lane in lanes_of(cells, self.cfg.max_concurrent_cells)
                 if any(c.key not in results for c in lane)]
        log.info("train: %d cells (%d finished earlier, %d to train in %d lane(s), up to %d at a time)", len(cells),
                 len(results), len(cells) - len(results), len(lanes), self.cfg.max_concurrent_cells)
        if lanes:
            self._start_ray()
            on_event(lambda e: self._on_event(e, by_key))
            with interruptible_pool(len(lanes), "lane") as pool:  # Ctrl-C leaves the lanes at once
                for lane_results in pool.map(lambda lane: self._run_lane(lane, results), lanes):
                    results.update(lane_results)
        ordered = [results[c.key] for c in cells]
        ok = sum(r.status == "ok" for r in ordered)
        log.info("train: %d/%d cells ok%s", ok, len(ordered),
                 "" if ok == len(ordered) else f"; failed: {', '.join(r.cell.name for r in ordered if r.status != 'ok')}")
        return ordered

    def _start_ray(self) -> None:
        """Ray's local node gives up after 30 s when the machine is overloaded: try again."""
        import ray
        from tenacity import Retrying, retry_if_exception_message, stop_after_attempt, wait_fixed

        from bench.cluster import ensure_ray

        for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_fixed(5), reraise=True,
                                retry=retry_if_exception_message(match=".*timed out during startup.*"),
                                before_sleep=lambda s: (log.warning("ray: node start timed out, retrying"),
                                                        ray.shutdown())):
            with attempt:
                ensure_ray(self.exp.ray)

    # ------------------------------------------------------------------ events from the workers
    def _on_event(self, event: dict, by_key: dict[str, Cell]) -> None:
        c = by_key.get(event.get("key"))
        if event.get("kind") != "cell" or c is None:
            return
        state = event.get("state")
        if state == "trained":
            acc = _acc(event.get("accuracy_before"), event.get("pairwise_accuracy"))
            log.info("train %s: state=done loss=%.4f pairwise_acc=%s in %.0fs (trainer %.1fs)%s", c.name,
                     float("nan") if event.get("final_loss") is None else event["final_loss"], acc, event.get("seconds") or 0,
                     event.get("train_seconds") or 0, " [stalled: did not learn]" if event.get("stalled") else "")
            with self._lock:
                self._announced[c.key] = event
            threading.Thread(target=self._materialize_quietly, args=(c, event["path"]), daemon=True).start()
        elif state == "failed":
            log.error("train %s: state=failed %s", c.name, event.get("error", ""))
        else:
            log.info("train %s: state=%s", c.name, state)

    def _materialize_quietly(self, c: Cell, path: str) -> None:
        try:
            self._materialize(c, path)
        except Exception as e:  # noqa: BLE001 - the lane's end copies it again
            log.debug("train %s: early copy failed (%s); copied when the lane ends", c.name, e)

    def _materialize(self, c: Cell, path: str) -> Path:
        """Copy a finished cell from its lane checkpoint into the cache (atomic; once)."""
        from bench.train.methods import fetch_cell_output

        with self._lock:
            if self.p.cache.is_done("train", c.key):  # copied already when the worker announced it
                return self.p.cache.path("train", c.key)

        def build(tmp: Path) -> None:
            import shutil

            src = Path(fetch_cell_output(path))
            for item in src.iterdir():
                if item.name != "progress.json":
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
            metrics = json.loads((tmp / "metrics.json").read_text())
            metrics["cell"] = {"name": c.name, "model": c.entry.model, "family": c.family, "params": c.params,
                               "method": c.method, "dataset": c.dataset, "key": c.key}
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
            _plot_curve(metrics.get("loss_curve") or [], tmp / "loss.png", c.name)

        with self._lock:
            return self.p.cache.get_or_build("train", c.key, build, lambda p: p, label=c.name,
                                             meta={"cell": c.name, "method": c.method, "model": c.entry.model,
                                                   "dataset": c.dataset},
                                             validate=lambda p: json.loads((p / "metrics.json").read_text()))

    def _result(self, c: Cell, path: Path, cached: bool = False) -> CellResult:
        return CellResult(c, "ok", path=path, metrics=json.loads((path / "metrics.json").read_text()), cached=cached)

    # ------------------------------------------------------------------ one lane
    def loop_config(self, lane: list[Cell], done: dict[str, CellResult]) -> dict:
        cells = []
        for c in lane:
            h = self.cfg.hyper_for(c.entry)
            cfg = {"cell": c.name, "key": c.key, "method": c.method, "model_dir": c.model_dir, "prompt": self.cfg.prompt,
                   "hyper": h.model_dump(), "seed": h.seed if h.seed is not None else self.exp.seed,
                   "scorer_kind": c.scorer_kind, "score_batch_size": self.cfg.score_batch_size,
                   "use_gpu": self.cfg.scaling.use_gpu, "data": c.data,
                   "r2r": self.r2r_settings() if c.method.startswith("r2r-") else None,
                   "deepspeed": json.loads(Path(self.cfg.deepspeed).read_text()) if self.cfg.deepspeed else None}
            if c.method == "ppo":
                rm = next(r for r in lane + [d.cell for d in done.values()]
                          if r.method == "rm" and (r.entry.label, r.dataset) == (c.entry.label, c.dataset))
                cfg["rm"] = {"model": rm.model_dir, "key": rm.key, "cell": rm.name, "adapter": None}
                if rm.key in done:  # trained earlier: its adapter/ (LoRA) or model/ (full fine-tune)
                    from bench.train.methods import reward_model_source

                    cfg["rm"].update(reward_model_source(done[rm.key].path, rm.model_dir))
            cells.append(cfg)
        return {"cells": cells, "skip": sorted(k for k in done if k in {c.key for c in lane}),
                "cpus_per_worker": self.cfg.scaling.cpus_per_worker,
                "pid_dir": str(self.root / "running" / self.lane_name(lane)),
                "lane_dir": f"{self.storage_path()}/{self.lane_name(lane)}"}

    def _run_lane(self, lane: list[Cell], done: dict[str, CellResult]) -> dict[str, CellResult]:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        from bench.train.methods import train_lane

        s = self.cfg.scaling
        resources = {"CPU": s.cpus_per_worker, **({"GPU": s.gpus_per_worker} if s.use_gpu else {})}
        backend = self.cfg.backend if self.cfg.backend != "auto" else ("nccl" if s.use_gpu else "gloo")
        name = self.lane_name(lane)
        trainer = TorchTrainer(
            train_lane, train_loop_config=self.loop_config(lane, dict(done)),
            scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources),
            torch_config=TorchConfig(backend=backend),
            # Every cell's final checkpoint is kept: the driver copies cells from them.
            run_config=RunConfig(name=name, storage_path=self.storage_path(),
                                 failure_config=FailureConfig(max_failures=self.cfg.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=None)),
        )
        started = time.time()
        error = ""
        progress: dict = {"done": {}, "failed": {}}
        try:
            result = trainer.fit()
            if result.error is not None:
                error = one_line(result.error)
            if result.checkpoint is not None:
                with result.checkpoint.as_directory() as d:
                    if (Path(d) / "progress.json").is_file():
                        progress = json.loads((Path(d) / "progress.json").read_text())
        except Exception as e:  # noqa: BLE001 - a failed lane must not stop the other lanes
            error = one_line(e)
        out: dict[str, CellResult] = {}
        for c in lane:
            if c.key in done:
                continue
            if c.key in progress.get("done", {}) or self.p.cache.is_done("train", c.key):
                try:
                    path = self._materialize(c, progress.get("done", {}).get(c.key, ""))
                    out[c.key] = self._result(c, path)
                    continue
                except Exception as e:  # noqa: BLE001
                    error = error or one_line(e)
            reason = progress.get("failed", {}).get(c.key) or error or "lane ended before this cell was trained"
            if c.key not in progress.get("failed", {}):
                log.error("train %s: state=failed %s", c.name, reason)
            out[c.key] = CellResult(c, "failed", reason)
        lane_seconds = time.time() - started
        trained = [r for r in out.values() if r.status == "ok"]
        busy = sum(r.metrics.get("seconds") or 0 for r in trained)
        for r in trained:  # the lane's start-up, shared by its cells
            r.metrics["lane"] = {"name": name, "seconds": round(lane_seconds, 1), "cells": len(lane),
                                 "startup_seconds": round(max(0.0, lane_seconds - busy), 1)}
        return out


def _acc(before, after) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return f"{fmt(before)}->{fmt(after)}"


def _plot_curve(curve: list, path: Path, title: str) -> None:
    if not curve:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5), dpi=80)
    ax.plot([s for s, _ in curve], [v for _, v in curve], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------- pipeline glue
def preflight(pipeline) -> None:
    """Cheap checks before any stage runs: models resolvable, data sources known, files present."""
    from bench.models import check_model

    cfg: TrainConfig = pipeline.exp.train
    for i, entry in enumerate(cfg.models):
        try:
            check_model(entry.model)
        except InputError as e:
            raise InputError(f"train.models.{i}.model: {e}") from None
    TrainGrid(pipeline).datasets()
    if cfg.deepspeed is not None and not Path(cfg.deepspeed).is_file():
        raise InputError(f"train.deepspeed: DeepSpeed config not found: {cfg.deepspeed}")


def trained_system(r: CellResult, cfg: TrainConfig):
    """A grid cell as a leaderboard system: its single-neuron scorer spec and its metadata."""
    from bench.config import ScorerSpec
    from bench.systems import SystemInfo

    c = r.cell
    model, adapter = c.entry.model, None
    if r.status == "ok":
        if (r.path / "adapter").is_dir():
            adapter = str(r.path / "adapter")
        else:
            model = str(r.path / "model")
    spec = ScorerSpec(name=c.name, kind=c.scorer_kind, model=model, adapter=adapter, prompt=cfg.prompt,
                      batch_size=cfg.score_batch_size, max_length=cfg.hyper_for(c.entry).max_length, params=c.params)
    info = SystemInfo(c.name, kind="trained", params=c.params, family=c.family, method=c.method,
                      train_dataset=c.dataset, status=r.status, error=r.error)
    return spec, info


__all__ = ["Cell", "CellResult", "TrainGrid", "METHOD_ORDER", "lanes_of", "planned_cell_names", "trained_system"]
