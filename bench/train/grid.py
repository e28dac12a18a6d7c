"""The training grid: (model x method x training collection) cells, each a Ray Train run.

    plan()  validates the grid and builds each cell's data (bad input -> InputError, exit 2,
            before any training)
    run()   trains the cells concurrently (at most `max_concurrent_cells`, as Ray resources
            allow), each with its own ScalingConfig and FailureConfig; a failed cell is
            recorded and the others go on; finished cells are found by key and skipped;
            interrupted ones resume from their last checkpoint in `storage_path`.

A finished cell is a cached artifact `results/<exp>/train/<key>/` (key = hash of the cell's
config, its training data and the code version) holding `adapter/` (or `model/`),
`metrics.json` (final loss, pairwise accuracy on held-out pairs, loss curve, samples/s) and
`loss.png`. PPO cells depend on the RM cell of their model, which is submitted first.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench import __version__
from bench.artifacts import content_hash, file_sha256
from bench.errors import InputError
from bench.train.config import METHODS, ModelEntry, TrainConfig

log = logging.getLogger("bench")

TRAIN_VERSION = 1  # bump when training code changes what a cell produces


@dataclass
class Cell:
    entry: ModelEntry
    model_dir: str
    family: str
    params: str
    method: str
    dataset: str
    name: str  # system name in the leaderboard
    data: dict = field(repr=False, default_factory=dict)
    key: str = ""

    @property
    def scorer_kind(self) -> str:
        return METHODS[self.method][2]


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


def _one_line(err: BaseException) -> str:
    """Ray wraps a worker's traceback in its error: keep the innermost exception's line."""
    import re

    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    inner = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*:", ln)]
    text = inner[-1] if inner else (lines[-1] if lines else "")
    text = " ".join(text.split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class TrainGrid:
    def __init__(self, pipeline):
        self.p = pipeline
        self.exp = pipeline.exp
        self.cfg: TrainConfig = pipeline.exp.train
        self.root = pipeline.out_dir / "train"

    # ------------------------------------------------------------------ plan
    def datasets(self) -> list[str]:
        names = [s.name for s in self.exp.data]
        chosen = list(self.cfg.datasets) or names[:1]
        for n in chosen:
            if n not in names:
                raise InputError(f"train.datasets: unknown data source {n!r}; expected one of {', '.join(names)}")
        return chosen

    def _data(self, name: str) -> dict:
        from bench.data.pairs import as_records, pointwise_items, preference_pairs

        ds = self.p.dataset(name)
        run = self.p.first_stage(name).run
        train_q, valid_q = ds.splits.get("train", []), ds.splits.get("valid", [])
        d = self.cfg.depth
        data = {"train_items": as_records(pointwise_items(ds.collection, run, train_q, d)),
                "train_pairs": as_records(preference_pairs(ds.collection, run, train_q, d)),
                "valid_pairs": as_records(preference_pairs(ds.collection, run, valid_q, d))}
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
            needs = {"train_items": "pointwise items", "train_pairs": "preference pairs"}
            for method in self.cfg.methods:
                src = "train_pairs" if method in ("rm", "dpo") else "train_items"
                if not data[src]:
                    raise InputError(f"train.methods: {method!r} has no training data: no {needs[src]} in the "
                                     f"train split of data source {ds_name!r} (check splits.train)")
                for entry, model_dir in models:
                    suffix = f"@{ds_name}" if len(datasets) > 1 else ""
                    cells.append(Cell(entry, model_dir, _family_of(entry, model_dir),
                                      entry.params or model_params_label(entry.model), method, ds_name,
                                      f"{entry.label}-{method}{suffix}", data))
        by_rm = {(c.entry.label, c.dataset): c for c in cells if c.method == "rm"}
        ds_hash = self.cfg.deepspeed and file_sha256(Path(self.cfg.deepspeed))
        for c in cells:  # RM keys first: a PPO cell's key includes its reward model's
            if c.method != "ppo":
                c.key = self._key(c, ds_hash, None)
        for c in cells:
            if c.method == "ppo":
                c.key = self._key(c, ds_hash, by_rm[(c.entry.label, c.dataset)].key)
        return cells

    def _key(self, c: Cell, ds_hash, rm_key) -> str:
        from bench.models import model_fingerprint

        h = self.cfg.hyper
        return content_hash("train", TRAIN_VERSION, __version__, c.entry.model, model_fingerprint(c.model_dir),
                            c.method, h,
                            self.cfg.prompt, self.cfg.depth, h.seed if h.seed is not None else self.exp.seed,
                            content_hash(c.data), ds_hash, rm_key)

    # ------------------------------------------------------------------ run
    def storage_path(self) -> str:
        if self.cfg.storage_path:
            sp = self.cfg.storage_path
            return sp if "://" in sp else str(Path(sp).expanduser().resolve())
        return str((self.root / "ray").resolve())

    def cell_dir(self, c: Cell) -> Path:
        return self.p.cache.path("train", c.key)

    def pid_dir(self, c: Cell) -> Path:
        return (self.root / "running" / c.key).resolve()

    def run(self, cells: list[Cell] | None = None) -> list[CellResult]:
        cells = cells if cells is not None else self.plan()
        todo = [c for c in cells if not self.p.cache.is_done("train", c.key)]
        if todo:
            self._start_ray()
        log.info("train: %d cells (%d finished earlier, %d to train, up to %d at a time)", len(cells),
                 len(cells) - len(todo), len(todo), self.cfg.max_concurrent_cells)
        futures: dict[str, Future] = {}
        rm_futures: dict[tuple[str, str], Future] = {}
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrent_cells, thread_name_prefix="cell") as pool:
            for c in cells:  # methods come in METHOD_ORDER, so every RM is submitted before any PPO
                rm = rm_futures.get((c.entry.label, c.dataset)) if c.method == "ppo" else None
                futures[c.name] = pool.submit(self._run_cell, c, rm)
                if c.method == "rm":
                    rm_futures[(c.entry.label, c.dataset)] = futures[c.name]
            results = [futures[c.name].result() for c in cells]
        ok = sum(r.status == "ok" for r in results)
        log.info("train: %d/%d cells ok%s", ok, len(results),
                 "" if ok == len(results) else f"; failed: {', '.join(r.cell.name for r in results if r.status != 'ok')}")
        return results

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

    def _run_cell(self, c: Cell, rm_future: Future | None) -> CellResult:
        rm_result: CellResult | None = rm_future.result() if rm_future is not None else None
        if rm_result is not None and rm_result.status != "ok":
            log.info("train %s: state=failed (its reward model %s failed)", c.name, rm_result.cell.name)
            return CellResult(c, "failed", f"reward model cell {rm_result.cell.name} failed")
        done = self.p.cache.is_done("train", c.key)
        if not done:
            log.info("train %s: state=running key=%s", c.name, c.key)
        try:
            path = self.p.cache.get_or_build("train", c.key, lambda tmp: self._fit(c, tmp, rm_result), lambda p: p,
                                             label=c.name, meta={"cell": c.name, "method": c.method,
                                                                 "model": c.entry.model, "dataset": c.dataset})
        except Exception as e:  # noqa: BLE001 - a failed cell must not stop the grid
            err = _one_line(e)
            log.error("train %s: state=failed %s", c.name, err)
            return CellResult(c, "failed", err)
        metrics = json.loads((path / "metrics.json").read_text())
        acc = metrics.get("pairwise_accuracy")
        log.info("train %s: state=%s loss=%.4f pairwise_acc=%s", c.name, "cached" if done else "done",
                 metrics.get("final_loss", float("nan")), "n/a" if acc is None else f"{acc:.3f}")
        return CellResult(c, "ok", path=path, metrics=metrics, cached=done)

    def loop_config(self, c: Cell, rm_result: CellResult | None) -> dict:
        h = self.cfg.hyper
        cfg = {"cell": c.name, "method": c.method, "model_dir": c.model_dir, "prompt": self.cfg.prompt,
               "hyper": h.model_dump(), "seed": h.seed if h.seed is not None else self.exp.seed,
               "scorer_kind": c.scorer_kind, "score_batch_size": self.cfg.score_batch_size,
               "use_gpu": self.cfg.scaling.use_gpu, "cpus_per_worker": self.cfg.scaling.cpus_per_worker,
               "data": c.data, "pid_dir": str(self.pid_dir(c)),
               "deepspeed": json.loads(Path(self.cfg.deepspeed).read_text()) if self.cfg.deepspeed else None}
        if rm_result is not None:
            cfg["rm"] = {"model": rm_result.cell.model_dir, "adapter": str(rm_result.path / "adapter")}
        return cfg

    def _fit(self, c: Cell, out: Path, rm_result: CellResult | None) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        from bench.train.methods import train_loop

        s = self.cfg.scaling
        resources = {"CPU": s.cpus_per_worker, **({"GPU": s.gpus_per_worker} if s.use_gpu else {})}
        backend = self.cfg.backend if self.cfg.backend != "auto" else ("nccl" if s.use_gpu else "gloo")
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=self.loop_config(c, rm_result),
            scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources),
            torch_config=TorchConfig(backend=backend),
            run_config=RunConfig(name=f"{self.exp.name}-{c.name}-{c.key}".replace("/", "_").replace("@", "_"),
                                 storage_path=self.storage_path(),
                                 failure_config=FailureConfig(max_failures=self.cfg.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        started = time.time()
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        if result.checkpoint is None:
            raise RuntimeError("training finished without a final checkpoint")
        result.checkpoint.to_directory(str(out))
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["wall_seconds"] = round(time.time() - started, 2)
        metrics["cell"] = {"name": c.name, "model": c.entry.model, "family": c.family, "params": c.params,
                           "method": c.method, "dataset": c.dataset, "key": c.key}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        _plot_curve(metrics.get("loss_curve") or [], out / "loss.png", c.name)


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
    from bench.report.leaderboard import SystemInfo

    c = r.cell
    model, adapter = c.entry.model, None
    if r.status == "ok":
        if (r.path / "adapter").is_dir():
            adapter = str(r.path / "adapter")
        else:
            model = str(r.path / "model")
    spec = ScorerSpec(name=c.name, kind=c.scorer_kind, model=model, adapter=adapter, prompt=cfg.prompt,
                      batch_size=cfg.score_batch_size, max_length=cfg.hyper.max_length, params=c.params)
    info = SystemInfo(c.name, kind="trained", params=c.params, family=c.family, method=c.method,
                      train_dataset=c.dataset, status=r.status, error=r.error)
    return spec, info
