"""Config slice of sweeps (pydantic only, light to import).

    tune:
      space:                      # hyperparameter sweep: train + re-rank + validation nDCG per trial
        lr: {loguniform: [1e-5, 1e-3]}
        lora_r: {choice: [4, 8]}
        method: {grid: [sft, dpo]}
      num_samples: 4
      scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
      search: {type: random}
      topk: {ks: [1, 3, 5, 10, all], criterion: comprehensiveness - sufficiency}   # SHAP top-k ablation
      size: {models: [{model: tiny-llama}, {model: smollm2-135m-instruct}], method: sft}  # model-size ablation

    tune:                         # variance over seeds and a training-data-size axis
      space:
        seed: {grid: [1, 2, 3]}
        train_fraction: {grid: [0.25, 0.5, 1.0]}   # or train_queries: {grid: [4, 8, 16]}

Each distribution is one of `{grid: [...]}`, `{choice: [...]}`, `{uniform: [lo, hi]}`,
`{loguniform: [lo, hi]}`, `{randint: [lo, hi]}` (ray.tune.grid_search/choice/uniform/loguniform/randint).
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from bench.config_base import StrictModel
from bench.train.config import METHODS, ModelEntry, TrainConfig

# Searchable names: training hyperparameters (bench.train.config.Hyperparameters), model and method.
HYPER_NAMES = ("lr", "epochs", "max_steps", "lora_r", "lora_alpha", "lora_dropout", "dpo_beta", "batch_size",
               "grad_accum", "warmup_steps")
# Axes of an ablation beside the hyperparameters: the trial's seed (training, sampling and the training-query
# subset) and the training-data size (a fraction or a number of the training split's queries).
DATA_NAMES = ("seed", "train_fraction", "train_queries")
SPACE_NAMES = HYPER_NAMES + ("model", "method") + DATA_NAMES
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
TOPK_METRICS = ("comprehensiveness", "sufficiency", "aopc", "query_overlap", "random_comprehensiveness")


def _check_distribution(name: str, dist: Any) -> dict:
    if not isinstance(dist, dict) or len(dist) != 1:
        raise ValueError(f"{name}: expected one distribution such as {{choice: [a, b]}} or {{loguniform: [lo, hi]}}, "
                         f"got {dist!r}")
    (kind, arg), = dist.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{name}: unknown distribution {kind!r}; expected one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(arg, list) or not arg:
        raise ValueError(f"{name}.{kind}: expected a non-empty list, got {arg!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(arg) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg):
            raise ValueError(f"{name}.{kind}: expected [lo, hi] numbers, got {arg!r}")
        lo, hi = arg
        if not lo < hi:
            raise ValueError(f"{name}.{kind}: lo must be < hi, got [{lo}, {hi}]")
        if kind == "loguniform" and lo <= 0:
            raise ValueError(f"{name}.loguniform: bounds must be > 0, got [{lo}, {hi}]")
        if kind == "randint" and not all(isinstance(v, int) for v in arg):
            raise ValueError(f"{name}.randint: expected integer bounds, got {arg!r}")
    if name == "method":
        bad = [m for m in arg if m not in METHODS] if kind in ("grid", "choice") else ["<numeric>"]
        if bad:
            raise ValueError(f"method: unknown method(s) {bad}; expected grid/choice over {', '.join(METHODS)}")
    if name == "model" and kind not in ("grid", "choice"):
        raise ValueError("model: expected {grid: [...]} or {choice: [...]} of model names")
    if name in ("seed", "train_queries"):
        lowest = 0 if name == "seed" else 1
        if kind not in ("grid", "choice", "randint") or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= lowest for v in arg):
            raise ValueError(f"{name}: expected {{grid: [...]}}, {{choice: [...]}} or {{randint: [lo, hi]}} of "
                             f"integers >= {lowest}, got {dist!r}")
    if name == "train_fraction":
        if kind not in ("grid", "choice", "uniform") or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in arg):
            raise ValueError(f"train_fraction: expected {{grid: [...]}}, {{choice: [...]}} or {{uniform: [lo, hi]}} of "
                             f"fractions in (0, 1], got {dist!r}")
    return dist


class SchedulerConfig(StrictModel):
    type: Literal["asha", "fifo"] = Field("asha", description="asha: ASHAScheduler stops weak trials early; fifo: none")
    max_t: Optional[int] = Field(None, ge=1, description="most reports per trial; default the trial's report count")
    grace_period: int = Field(1, ge=1, description="reports before a trial may be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class SearchConfig(StrictModel):
    type: Literal["grid", "random", "optuna", "hyperopt"] = Field(
        "random", description="grid/random: Tune's BasicVariantGenerator; optuna/hyperopt: Tune's searchers")
    seed: Optional[int] = Field(None, description="searcher seed; default the experiment seed")


class TopKConfig(StrictModel):
    """SHAP top-k ablation: attributions once per item, faithfulness and query overlap for every k."""

    systems: Optional[list[str]] = Field(None, description="rerank systems (names) to explain; default all")
    ks: list[Union[int, Literal["all"]]] = Field(default_factory=lambda: [1, 3, 5, 10, 15, 20, "all"],
                                                 description="k values; 'all' = every word of the item")
    criterion: str = Field("comprehensiveness - random_comprehensiveness",
                           description="what the chosen k maximises: a metric name or 'a - b' / 'a + b' of several. "
                                       "Note 'comprehensiveness - sufficiency' always favours k=all (sufficiency 0)")
    max_queries: int = Field(8, ge=1, description="queries of the evaluated split explained per model")
    top_items: int = Field(1, ge=1, description="top re-ranked items explained per query")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v):
        if not v:
            raise ValueError("expected at least one k")
        if any(isinstance(k, int) and k < 1 for k in v):
            raise ValueError(f"every k must be >= 1 or 'all', got {v}")
        ints = sorted({k for k in v if k != "all"})
        return ints + (["all"] if "all" in v else [])

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, v):
        parse_criterion(v)
        return v


def parse_criterion(text: str) -> list[tuple[float, str]]:
    """'comprehensiveness - sufficiency' -> [(1, 'comprehensiveness'), (-1, 'sufficiency')]."""
    parts = re.split(r"\s*([+-])\s*", text.strip())
    terms, sign = [], 1.0
    for i, part in enumerate(parts):
        if i % 2 == 1:
            sign = 1.0 if part == "+" else -1.0
            continue
        if part == "" and i == 0:
            continue
        if part not in TOPK_METRICS:
            raise ValueError(f"criterion {text!r}: unknown metric {part!r}; expected {', '.join(TOPK_METRICS)} "
                             f"joined by + or -")
        terms.append((sign, part))
    if not terms:
        raise ValueError(f"criterion {text!r}: expected a metric name")
    return terms


class SizeConfig(StrictModel):
    """Model-size ablation: one method across sizes of one family."""

    models: list[ModelEntry] = Field(min_length=2, description="sizes of one family, e.g. tiny-llama, smollm2-135m-instruct")
    method: str = Field("sft", description="training method used for every size")
    faithfulness_items: int = Field(4, ge=1, description="validation items explained per size (comprehensiveness@k)")

    @field_validator("method")
    @classmethod
    def _method(cls, v):
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}; expected one of {', '.join(METHODS)}")
        return v


class TuneConfig(StrictModel):
    space: Optional[dict[str, Any]] = Field(
        None, description=f"search space: name -> distribution; names: {', '.join(SPACE_NAMES)}. seed: the trial's "
                          "seed (training, sampling, the training-query subset); train_fraction / train_queries: a "
                          "seeded subset of the training split's queries (nested across sizes for one seed)")
    train: Optional[TrainConfig] = Field(
        None, description="base cell of every trial (models[0], methods[0], hyper); default the experiment's train: "
                          "slice. Given here, the experiment's own training grid stays off")
    num_samples: int = Field(1, ge=1, description="samples of the space (each grid point is repeated this often)")
    scheduler: SchedulerConfig = SchedulerConfig()
    search: SearchConfig = SearchConfig()
    metric: str = Field("valid_nDCG@10", description="objective each trial reports (validation split only)")
    mode: Literal["max", "min"] = "max"
    report_every: int = Field(2, ge=1, description="training steps between two validation reports (ASHA rungs)")
    max_concurrent_trials: int = Field(2, ge=1)
    resources_per_trial: dict[str, float] = Field(default_factory=lambda: {"CPU": 1.0})
    storage_path: Optional[str] = Field(None, description="Tune experiment storage; default results/<exp>/tune/ray")
    topk: Optional[TopKConfig] = None
    size: Optional[SizeConfig] = None

    @field_validator("space")
    @classmethod
    def _space(cls, space):
        if space is None:
            return None
        if not space:
            raise ValueError("empty search space: give at least one of " + ", ".join(SPACE_NAMES))
        for name, dist in space.items():
            if name not in SPACE_NAMES:
                raise ValueError(f"unknown hyperparameter {name!r}; expected one of {', '.join(SPACE_NAMES)}")
            _check_distribution(name, dist)
        if "train_fraction" in space and "train_queries" in space:
            raise ValueError("train_fraction and train_queries are two names of one axis; give one of them")
        return space

    @model_validator(mode="after")
    def _something(self):
        if self.space is None and self.topk is None and self.size is None:
            raise ValueError("nothing to sweep: give tune.space, tune.topk or tune.size")
        return self
