"""Hyperparameter / model / method sweeps with Ray Tune: one trial = train + re-rank + validation nDCG.

Each trial trains one cell in-process with the train stage's own trl trainer
(`bench.train.methods.build_trainer`), with the trial's hyperparameters applied to the
experiment's `train.hyper` (`model_copy(update=...)`). Every `report_every` optimizer steps it
saves the adapter, re-ranks the VALIDATION queries' first-stage candidates with that scorer and
reports validation measures to Tune, so ASHA can stop weak trials at its rungs. Nothing is ever
selected on test: after the sweep the best trial's last checkpoint becomes the "tuned" system,
which the pipeline re-ranks and evaluates on `evaluate.split` (test) like any other system.

Besides hyperparameters, the space may hold ablation axes: `seed` (the trial's seed: training,
sampling and its training-query subset) and `train_fraction` / `train_queries` (a seeded subset of the
training split's queries; for one seed the subsets are nested across sizes). With either,
`variance.{md,csv,json}` summarises the trials per configuration over seeds: the objective's mean, its
standard deviation / min / max over seeds, and the mean of per-query validation scores (averaged over
seeds) with a 95 % bootstrap interval resampling queries.

Artifacts under results/<exp>/tune/: ray/ (Tune's experiment state: resume point), trials.csv,
best.json, best/ (the best trial's adapter or model), starts.log (one line per trial start),
per_query/<trial>.json (validation scores per query at the trial's last report), variance.*.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.errors import InputError
from bench.tune.config import HYPER_NAMES, TuneConfig

log = logging.getLogger("bench")

SWEEP_NAME = "sweep"


# ---------------------------------------------------------------------- what trials report
def reported_metrics(exp) -> list[str]:
    """Every metric a sweep trial reports; the objective must be one of them."""
    measures = list(dict.fromkeys(["nDCG@10", *exp.evaluate.measures]))
    return [f"valid_{m}" for m in measures] + ["train_loss", "step", "training_iteration"]


from bench.tune.best import base_train, tune_root  # noqa: E402 - shared with the pipeline (best trial)


def storage_path(p) -> str:
    sp = p.exp.tune.storage_path
    if sp:
        return sp if "://" in sp else str(Path(sp).expanduser().resolve())
    return str(tune_root(p) / "ray")


def start_ray(p):
    """`ensure_ray`, retried: on an overloaded machine Ray's fixed 30 s raylet start-up wait can expire."""
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

    from bench.cluster import ensure_ray

    def startup_timeout(e: BaseException) -> bool:
        if "timed out during startup" not in str(e):
            return False
        import ray

        log.warning("ray: local cluster start-up timed out; retrying")
        ray.shutdown()
        return True

    return retry(retry=retry_if_exception(startup_timeout), stop=stop_after_attempt(3), wait=wait_fixed(2),
                 reraise=True)(ensure_ray)(p.exp.ray)


# ---------------------------------------------------------------------- checks (before any trial)
def check_sweep(p) -> None:
    """Bad input -> InputError (one line, exit 2) before Ray starts."""
    from bench.evaluate.ir import parse_measures
    from bench.models import check_model

    cfg: TuneConfig = p.exp.tune
    if cfg.space is None:
        return
    if base_train(p) is None:
        raise InputError("tune.space: a hyperparameter sweep trains cells: add a `train:` (or `tune.train:`) slice "
                         "(models, methods, hyper) as the base every trial starts from")
    names = reported_metrics(p.exp)
    if cfg.metric not in names:
        raise InputError(f"tune.metric: {cfg.metric!r} is not reported by any trial; expected one of {', '.join(names)}")
    parse_measures([m[len('valid_'):] for m in names if m.startswith("valid_")])
    if p.exp.evaluate.split != "test":
        raise InputError(f"evaluate.split: the tuned system is selected on valid and re-evaluated on test; "
                         f"set evaluate.split: test (got {p.exp.evaluate.split!r})")
    methods = cfg.space.get("method")
    if "ppo" in (next(iter(methods.values())) if methods else base_train(p).methods[:1]):
        raise InputError("tune.space.method: 'ppo' needs a trained reward model per trial and is not swept; "
                         "sweep sft, rm, dpo, grpo or rloo")
    from pydantic import ValidationError

    from bench.train.config import Hyperparameters

    base_hyper = base_train(p).hyper.model_dump()
    for name, dist in cfg.space.items():  # every value a trial may get must be a valid hyperparameter
        if name not in HYPER_NAMES:
            continue
        for value in next(iter(dist.values())):
            try:
                Hyperparameters.model_validate({**base_hyper, name: value})
            except ValidationError as e:
                raise InputError(f"tune.space.{name}: value {value!r} is not a valid {name}: "
                                 f"{e.errors()[0]['msg']}") from None
    models = cfg.space.get("model")
    for m in (next(iter(models.values())) if models else []):
        if not isinstance(m, str):
            raise InputError(f"tune.space.model: expected model names, got {m!r}")
        try:
            check_model(m)
        except InputError as e:
            raise InputError(f"tune.space.model: {e}") from None
    if "train_queries" in cfg.space:  # a subset cannot be larger than the training split
        n_train = len(p.dataset(base_dataset(p)).splits.get("train", []))
        too_many = [v for v in next(iter(cfg.space["train_queries"].values())) if v > n_train]
        if too_many:
            raise InputError(f"tune.space.train_queries: {too_many[0]} training queries asked for, but the train split "
                             f"has {n_train}; use at most {n_train} (or train_fraction)")
    kinds = {next(iter(d)) for d in cfg.space.values()}
    if cfg.search.type == "grid" and kinds - {"grid", "choice"}:
        raise InputError(f"tune.search.type: grid needs grid/choice distributions only, got {sorted(kinds)}")
    if cfg.search.type in ("optuna", "hyperopt") and "grid" in kinds:
        raise InputError(f"tune.search.type: {cfg.search.type} does not take {{grid: ...}}; use {{choice: ...}}")
    search_algorithm(cfg, p.exp.seed)  # a missing optional searcher fails here


def base_dataset(p) -> str:
    """The base cell's training collection."""
    cfg = base_train(p)
    return (list(cfg.datasets) or [p.exp.data[0].name])[0]


def search_algorithm(cfg: TuneConfig, seed: int):
    s = cfg.search
    seed = s.seed if s.seed is not None else seed
    if s.type == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise InputError("tune.search.type: optuna is not installed; pip install optuna") from None
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=seed)
    if s.type == "hyperopt":
        try:
            import hyperopt  # noqa: F401
        except ImportError:
            raise InputError("tune.search.type: hyperopt is not installed; pip install hyperopt") from None
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def param_space(cfg: TuneConfig) -> dict:
    from ray import tune

    out = {}
    for name, dist in cfg.space.items():
        (kind, arg), = dist.items()
        if kind == "grid" or (kind == "choice" and cfg.search.type == "grid"):
            out[name] = tune.grid_search(list(arg))
        elif kind == "choice":
            out[name] = tune.choice(list(arg))
        elif kind == "uniform":
            out[name] = tune.uniform(*arg)
        elif kind == "loguniform":
            out[name] = tune.loguniform(*arg)
        else:  # randint: inclusive bounds in the config, Tune's upper bound is exclusive
            out[name] = tune.randint(arg[0], arg[1] + 1)
    return out


def scheduler(cfg: TuneConfig, max_reports: int):
    if cfg.scheduler.type == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    from ray.tune.schedulers import ASHAScheduler

    s = cfg.scheduler
    return ASHAScheduler(time_attr="training_iteration", max_t=s.max_t or max(max_reports, s.grace_period + 1),
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


# ---------------------------------------------------------------------- data for trials
def validation_candidates(p, dataset: str) -> dict:
    """The validation queries' first-stage top-`rerank.depth` candidates and their qrels."""
    ds = p.dataset(dataset)
    run = p.first_stage(dataset).run
    qids = ds.splits.get("valid", [])
    if not qids:
        raise InputError(f"splits.valid: a sweep selects on the validation split, but data source {dataset!r} "
                         f"has no validation queries")
    col = ds.collection
    rows = [{"qid": q, "docid": d, "query": col.queries[q], "text": col.corpus[d].full_text()}
            for q in qids for d, _ in run.ranked(q, p.exp.rerank.depth)]
    return {"rows": rows, "qrels": {q: dict(col.qrels.get(q, {})) for q in qids}, "dataset": dataset}


def _base(p, models: list[str] | None = None) -> dict:
    """Everything a trial needs that does not vary: the base cell's data and settings."""
    from bench.models import resolve_model
    from bench.train.grid import TrainGrid

    cfg = base_train(p)
    cell = TrainGrid(p, cfg).plan()[0]  # the base cell's data, planned by the train stage's own code
    space = p.exp.tune.space or {}
    if models is None:
        models = next(iter(space["model"].values())) if "model" in space else [cfg.models[0].model]
    for m in models:
        resolve_model(m)  # build presets once here, not racing in every trial
    return {"data": cell.data, "valid": validation_candidates(p, cell.dataset), "hyper": cfg.hyper.model_dump(),
            "model": cfg.models[0].model, "method": cfg.methods[0], "prompt": cfg.prompt,
            "score_batch_size": cfg.score_batch_size, "seed": cfg.hyper.seed if cfg.hyper.seed is not None else p.exp.seed,
            "measures": list(dict.fromkeys(["nDCG@10", *p.exp.evaluate.measures])),
            "report_every": p.exp.tune.report_every, "starts_log": str(tune_root(p) / "starts.log"),
            "threads": max(1, int(p.exp.tune.resources_per_trial.get("CPU", 1)))}


def planned_steps(hyper: dict, data: dict, method: str) -> int:
    if hyper.get("max_steps"):
        return int(hyper["max_steps"])
    n = len(data["train_pairs"] if method in ("rm", "dpo") else data["train_items"])
    return max(1, math.ceil(hyper["epochs"] * n / (hyper["batch_size"] * hyper["grad_accum"])))


# ---------------------------------------------------------------------- the trial
def training_queries(data: dict) -> list[str]:
    """The training split's queries that have training data (pointwise items, pairs or teacher lists)."""
    qids = {r["qid"] for key in ("train_items", "train_pairs", "r2r_lists") for r in data.get(key, [])
            if isinstance(r, dict) and "qid" in r}
    return sorted(qids)


def subset_training_data(data: dict, fraction=None, queries=None, seed: int = 0) -> dict:
    """The training data of a seeded random subset of the training queries: `queries` of them, or
    ceil(fraction x n) (at least 1). One permutation per seed, so for one seed smaller subsets are nested in
    larger ones. Validation data is never touched. Records `train_queries_used`."""
    import numpy as np

    if fraction is None and queries is None:
        return data
    qids = training_queries(data)
    n = len(qids)
    keep_n = min(n, int(queries)) if queries is not None else max(1, math.ceil(float(fraction) * n - 1e-9))
    order = np.random.default_rng(seed).permutation(n)
    keep = {qids[i] for i in order[:keep_n]}
    out = dict(data)
    for key in ("train_items", "train_pairs", "r2r_lists"):
        if key in data:
            out[key] = [r for r in data[key] if not isinstance(r, dict) or r.get("qid") in keep]
    out["train_queries_used"] = sorted(keep)
    return out


def trial_cell(config: dict, base: dict) -> dict:
    """The train stage's loop config for this trial: the base hyperparameters updated by the trial's, its seed
    and its subset of the training queries."""
    from bench.models import resolve_model
    from bench.train.config import Hyperparameters, method_info

    update = {k: config[k] for k in HYPER_NAMES if k in config}
    for k in ("epochs", "max_steps", "lora_r", "lora_alpha", "batch_size", "grad_accum", "warmup_steps"):
        if k in update and k != "epochs":
            update[k] = int(update[k])
    # No HF checkpoints mid-trial: the trial reports its own adapter at every validation point.
    update["save_steps"] = 10 ** 9
    hyper = Hyperparameters(**base["hyper"]).model_copy(update=update)
    hyper = Hyperparameters.model_validate(hyper.model_dump())  # re-validate the trial's values
    method = config.get("method", base["method"])
    model = config.get("model", base["model"])
    seed = int(config.get("seed", base["seed"]))
    hyper = hyper.model_copy(update={"seed": seed})
    data = subset_training_data(base["data"], config.get("train_fraction"), config.get("train_queries"), seed)
    return {"cell": f"trial-{model}-{method}", "method": method, "model": model, "model_dir": resolve_model(model),
            "prompt": base["prompt"], "hyper": hyper.model_dump(), "seed": seed,
            "scorer_kind": method_info(method)[2], "score_batch_size": base["score_batch_size"], "use_gpu": False,
            "cpus_per_worker": base["threads"], "data": data, "deepspeed": None}


def validation_scores(spec_kwargs: dict, valid: dict, measures: list[str], per_query_out: dict | None = None
                      ) -> dict[str, float]:
    """Re-rank the validation candidates with the scorer and evaluate them (ir-measures). `per_query_out` (a
    dict) receives each measure's value per query."""
    from bench.config import ScorerSpec
    from bench.data.collection import Run
    from bench.evaluate.ir import per_query
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(ScorerSpec(**spec_kwargs))
    rows = valid["rows"]
    scores = scorer.score([r["query"] for r in rows], [r["text"] for r in rows])
    run: dict[str, dict[str, float]] = {}
    for r, s in zip(rows, scores):
        run.setdefault(r["qid"], {})[r["docid"]] = float(s)
    df = per_query(Run("trial", run), valid["qrels"], measures, valid["dataset"], list(valid["qrels"]))
    if per_query_out is not None:
        for m in measures:
            rows = df[df["measure"] == str(_parsed(m))]
            per_query_out[f"valid_{m}"] = {str(q): float(v) for q, v in zip(rows["qid"], rows["value"])}
    means = df.groupby("measure")["value"].mean()
    return {f"valid_{m}": float(means.get(str(_parsed(m)), float("nan"))) for m in measures}


def _parsed(name: str):
    import ir_measures

    return ir_measures.parse_measure(name)


def sweep_trial(config: dict, base: dict) -> None:
    """Tune function trainable: train in chunks of `report_every` steps, report validation scores."""
    import torch
    from ray import tune
    from transformers import TrainerCallback

    from bench.train.methods import build_trainer

    ctx = tune.get_context()
    torch.set_num_threads(base["threads"])
    with open(base["starts_log"], "a", encoding="utf-8") as f:  # one line per trial start (resume audit)
        f.write(f"{ctx.get_trial_id()} {time.time():.3f}\n")
    cfg = trial_cell(config, base)
    torch.manual_seed(cfg["seed"])
    total = planned_steps(cfg["hyper"], cfg["data"], cfg["method"])
    planned_reports = math.ceil(total / base["report_every"])
    work = Path(tempfile.mkdtemp(prefix="trial-"))
    full = cfg["hyper"]["full_finetune"]

    class ValidationReport(TrainerCallback):
        """At every `report_every` steps: force a log line (for the loss), then evaluate and report."""

        def __init__(self):
            self.trainer = None
            self.loss = float("nan")
            self.pending = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % base["report_every"] == 0 or state.global_step >= state.max_steps:
                self.pending = state.global_step
                control.should_log = True  # on_log follows in this same step
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
            if self.pending == state.global_step:
                self.pending = None
                self.report(state.global_step)

        def report(self, step: int) -> None:
            ckpt = work / f"step-{step}"
            target = ckpt / ("model" if full else "adapter")
            self.trainer.save_model(str(target))
            spec = {"name": "trial", "kind": cfg["scorer_kind"], "prompt": cfg["prompt"],
                    "max_length": cfg["hyper"]["max_length"], "batch_size": cfg["score_batch_size"]}
            if full:
                self.trainer.processing_class.save_pretrained(str(target))
                spec["model"] = str(target)
            else:
                spec.update(model=cfg["model_dir"], adapter=str(target))
            per_q: dict = {}
            metrics = validation_scores(spec, base["valid"], base["measures"], per_q)
            metrics.update(step=step, train_loss=self.loss, planned_reports=planned_reports,
                           model=cfg["model"], method=cfg["method"], seed=cfg["seed"],
                           train_queries_used=len(cfg["data"].get("train_queries_used") or
                                                  training_queries(cfg["data"])))
            folder = Path(base["starts_log"]).parent / "per_query"  # the trial's last report, per query
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{ctx.get_trial_id()}.json").write_text(json.dumps({"config": config, "step": step, **per_q}))
            (ckpt / "trial.json").write_text(json.dumps({"config": config, "metrics": metrics,
                                                         "spec": {k: v for k, v in spec.items() if k != "adapter"}}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt)))
            shutil.rmtree(ckpt, ignore_errors=True)

    callback = ValidationReport()
    try:
        trainer, _ = build_trainer(cfg, str(work / "hf"), callback, 1)
        callback.trainer = trainer
        trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------- the driver
def run_sweep(p, resume: bool = False):
    """Run (or resume) the sweep; write trials.csv, best.json and best/. Returns the ResultGrid."""
    from ray import tune

    cfg: TuneConfig = p.exp.tune
    check_sweep(p)
    root = tune_root(p)
    root.mkdir(parents=True, exist_ok=True)
    base = _base(p)
    start_ray(p)
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, base=base), dict(cfg.resources_per_trial))
    path = os.path.join(storage_path(p), SWEEP_NAME)
    if resume and tune.Tuner.can_restore(path):
        log.info("tune: resuming the sweep at %s (finished trials are kept)", path)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, restart_errored=True)
    else:
        if resume:
            log.info("tune: nothing to resume at %s; starting the sweep", path)
        # A fresh sweep: old trial state, trial log and best configuration would otherwise mix in.
        if os.path.isdir(path):
            shutil.rmtree(path)
        shutil.rmtree(root / "best", ignore_errors=True)
        shutil.rmtree(root / "per_query", ignore_errors=True)
        for stale in ("best.json", "trials.csv", "starts.log", "variance.md", "variance.csv", "variance.json"):
            (root / stale).unlink(missing_ok=True)
        steps = planned_steps(base["hyper"], base["data"], base["method"])
        if "max_steps" in cfg.space:  # the largest value the space may give
            (kind, arg), = cfg.space["max_steps"].items()
            steps = int(max(arg))
        max_reports = math.ceil(steps / cfg.report_every)
        tuner = tune.Tuner(
            trainable, param_space=param_space(cfg),
            tune_config=tune.TuneConfig(metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples,
                                        scheduler=scheduler(cfg, max_reports),
                                        search_alg=search_algorithm(cfg, p.exp.seed),
                                        max_concurrent_trials=cfg.max_concurrent_trials),
            run_config=tune.RunConfig(name=SWEEP_NAME, storage_path=storage_path(p), verbose=1,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=0)))
    started = time.time()
    watcher = _InterruptWatcher()
    logging.getLogger("ray.tune.tune").addHandler(watcher)
    try:
        grid = tuner.fit()
    finally:
        logging.getLogger("ray.tune.tune").removeHandler(watcher)
    grid.interrupted = watcher.interrupted
    log.info("tune: sweep %s after %.0fs", "interrupted" if watcher.interrupted else "finished", time.time() - started)
    write_trials(p, grid, interrupted=watcher.interrupted)
    return grid


class _InterruptWatcher(logging.Handler):
    """Tune handles Ctrl-C itself (saves its state, then returns from fit); its log line is the only trace."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.interrupted = False

    def emit(self, record):
        if "Stop signal received" in record.getMessage():
            self.interrupted = True


def saved_trial_states(experiment_path: str | Path) -> dict[str, str]:
    """trial id -> status in Tune's last saved experiment state (what `--resume` will act on).

    After Ctrl-C the in-memory trials are cleaned up; a trial whose last report arrived but whose
    end Tune had not yet recorded is still RUNNING in the saved state and is run again on resume.
    """
    files = sorted(Path(experiment_path).glob("experiment_state-*.json"), key=lambda f: f.stat().st_mtime)
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (OSError, ValueError):
        return {}
    states = {}
    for entry in data.get("trial_data", []):
        t = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        states[t.get("trial_id")] = t.get("status")
    return states


def write_trials(p, grid, interrupted: bool = False) -> dict | None:
    """trials.csv (every trial, with how many reports it made and whether ASHA stopped it), best."""
    import pandas as pd

    cfg: TuneConfig = p.exp.tune
    root = tune_root(p)
    rows = []
    trials = grid._experiment_analysis.trials  # same order as the ResultGrid's results
    saved = saved_trial_states(grid.experiment_path) if interrupted else {}
    for r, trial in zip(grid, trials):
        m = dict(r.metrics or {})
        cfg_row = {f"config/{k}": v for k, v in (r.config or {}).items()}
        iters = int(m.get("training_iteration", 0) or 0)
        planned = int(m.get("planned_reports", 0) or 0)
        state = saved.get(trial.trial_id, "RUNNING") if interrupted else trial.status
        if r.error or state == "ERROR":
            status = "error"
        elif state != "TERMINATED":
            status = "unfinished"  # interrupted sweep: --resume runs it
        else:  # a terminated trial with fewer reports than planned was stopped by the scheduler
            status = "finished" if planned and iters >= planned else "stopped_early"
        rows.append({"trial_id": trial.trial_id, **cfg_row, "status": status, "iterations": iters,
                     "planned_reports": planned, "stopped_early": status == "stopped_early",
                     "steps": m.get("step"), "train_queries_used": m.get("train_queries_used"),
                     **{k: m.get(k) for k in reported_metrics(p.exp) if k.startswith("valid_")},
                     "train_loss": m.get("train_loss"), "error": str(r.error).splitlines()[0][:200] if r.error else ""})
    df = pd.DataFrame(rows)
    write_text_atomic(root / "trials.csv", df.to_csv(index=False))
    if interrupted:  # no best configuration from a partial sweep
        return None
    if set(cfg.space) & {"seed", "train_fraction", "train_queries"}:
        write_variance(p, df)
    ok = [r for r in grid if not r.error and r.metrics and cfg.metric in r.metrics
          and r.metrics[cfg.metric] == r.metrics[cfg.metric]]
    if not ok:
        log.error("tune: no trial reported %s; no best configuration", cfg.metric)
        return None
    best = grid.get_best_result(metric=cfg.metric, mode=cfg.mode, scope="last", filter_nan_and_inf=True)
    target = root / "best"
    tmp = Path(tempfile.mkdtemp(prefix=".best.", dir=root))
    best.checkpoint.to_directory(str(tmp))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    trial = json.loads((target / "trial.json").read_text())
    summary = {"metric": cfg.metric, "mode": cfg.mode, "value": best.metrics[cfg.metric],
               "trial_id": best.metrics.get("trial_id"), "config": best.config, "iterations":
               best.metrics.get("training_iteration"), "spec": trial["spec"],
               "n_trials": len(rows), "n_stopped_early": int(df["stopped_early"].sum())}
    write_json_atomic(root / "best.json", summary)
    log.info("tune: best %s=%.4f with %s (%d trials, %d stopped early by the scheduler)", cfg.metric,
             summary["value"], best.config, len(rows), summary["n_stopped_early"])
    return summary


def unfinished_trials(grid) -> int:
    """Trials left to run after an interrupted sweep (0 when it was not interrupted)."""
    if not getattr(grid, "interrupted", False):
        return 0
    return sum(not (r.metrics and r.metrics.get("training_iteration", 0) >= r.metrics.get("planned_reports", 1))
               for r in grid) or 1


# ---------------------------------------------------------------------- variance over seeds
def variance_table(trials, per_query: dict[str, dict], metric: str, seed: int, n_resamples: int = 1000) -> list[dict]:
    """Per configuration (every swept name but `seed`): trials, seeds, the objective's mean, standard deviation
    (ddof 1), min and max over seeds, and the mean of per-query validation scores (each query averaged over the
    configuration's seeds) with a 95 % percentile bootstrap interval resampling queries. `per_query`: trial id ->
    {metric -> {qid -> value}}."""
    import numpy as np

    from bench.evaluate.faithfulness import query_mean_ci

    done = trials[trials["status"].isin(["finished", "stopped_early"])]
    keys = [c for c in done.columns if c.startswith("config/") and c != "config/seed"]
    out = []
    groups = done.groupby(keys, dropna=False, sort=True) if keys else [((), done)]
    for values, g in groups:
        values = values if isinstance(values, tuple) else (values,)
        obj = g[metric].astype(float).dropna()
        acc: dict[str, list[float]] = {}
        for tid in g["trial_id"]:
            for q, v in (per_query.get(tid, {}).get(metric) or {}).items():
                acc.setdefault(q, []).append(v)
        means = {q: float(np.mean(v)) for q, v in acc.items()}
        out.append({**{k[len("config/"):]: v for k, v in zip(keys, values)}, "trials": int(len(g)),
                    "seeds": sorted(int(x) for x in g["config/seed"].dropna()) if "config/seed" in g else [],
                    "mean": float(obj.mean()) if len(obj) else None,
                    "sd": float(obj.std(ddof=1)) if len(obj) > 1 else None,
                    "min": float(obj.min()) if len(obj) else None, "max": float(obj.max()) if len(obj) else None,
                    "per_query": query_mean_ci(list(means.values()), list(means), seed, n_resamples)})
    return out


def write_variance(p, trials) -> dict[str, Path]:
    """tune/variance.{md,csv,json}: the sweep's objective per configuration over seeds (see `variance_table`)."""
    import pandas as pd

    from bench.explain.summary import fmt_interval

    cfg: TuneConfig = p.exp.tune
    root = tune_root(p)
    per_query = {}
    for f in sorted((root / "per_query").glob("*.json")):
        per_query[f.stem] = json.loads(f.read_text())
    rows = variance_table(trials, per_query, cfg.metric, p.exp.seed, p.exp.report.bootstrap_resamples or 1000)
    names = [k for k in (rows[0] if rows else {}) if k not in ("trials", "seeds", "mean", "sd", "min", "max",
                                                                "per_query")]
    f4 = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    columns = [*names, "trials", "seeds", f"{cfg.metric} mean over seeds", "sd over seeds", "min", "max",
               f"{cfg.metric} per-query mean [95% CI over queries]"]
    table = [[*(str(r[n]) for n in names), r["trials"], ",".join(map(str, r["seeds"])) or "-", f4(r["mean"]),
              f4(r["sd"]), f4(r["min"]), f4(r["max"]), fmt_interval(r["per_query"])] for r in rows]
    legend = (f"{cfg.metric} of the last report of each finished trial (trials stopped early by the scheduler "
              "included), grouped by every swept name but the seed; sd over seeds with ddof 1; the last column "
              "averages each validation query over the seeds, then bootstraps queries (95 %, seeded).")
    md = [f"# Sweep over seeds: {p.exp.name}", "", legend, "", "| " + " | ".join(columns) + " |",
          "|" + "---|" * len(columns)] + ["| " + " | ".join(str(v) for v in row) + " |" for row in table]
    paths = {"md": root / "variance.md", "csv": root / "variance.csv", "json": root / "variance.json"}
    write_text_atomic(paths["md"], "\n".join(md) + "\n")
    flat = [{**{n: r[n] for n in names}, "trials": r["trials"], "seeds": " ".join(map(str, r["seeds"])),
             "mean": r["mean"], "sd": r["sd"], "min": r["min"], "max": r["max"],
             **{f"per_query_{k}": r["per_query"].get(k) for k in ("mean", "ci_low", "ci_high", "n_queries")}}
            for r in rows]
    write_text_atomic(paths["csv"], pd.DataFrame(flat).to_csv(index=False, float_format="%.6f"))
    write_json_atomic(paths["json"], {"title": f"Sweep over seeds: {p.exp.name}", "legend": legend,
                                      "metric": cfg.metric, "rows": rows,
                                      "table": {"columns": columns, "rows": table}})
    log.info("tune: variance over seeds -> %s", paths["md"])
    return paths
