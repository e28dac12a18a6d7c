"""Config slice of the train stage: the grid of model families x methods (pydantic only, light to import).

Methods are declared once in `METHODS` (name -> how the cell is trained and which neuron scores
it), so the config schema, `rerank-bench train --help`, the README table and the scorer kind of
each trained cell come from one place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from bench.config_base import StrictModel, repeated
from bench.registry import accept_plugins, lookup

# name -> (trl trainer, training data, scorer kind, the single scoring neuron)
METHODS: dict[str, tuple[str, str, str, str]] = {
    "sft": ("trl SFTTrainer", "pointwise items", "relevance-token",
            "logit('yes') - logit('no') at the answer position of the relevance prompt"),
    "rm": ("trl RewardTrainer", "preference pairs", "reward-head",
           "the scalar head of a sequence-classification model (num_labels=1)"),
    "dpo": ("trl DPOTrainer", "preference pairs", "relevance-token",
            "logit('yes') - logit('no'): each pair teaches 'yes' over 'no' for its chosen item and the reverse "
            "for its rejected item, so the DPO implicit reward is this log-odds up to the reference's"),
    "ppo": ("trl.experimental.ppo PPOTrainer", "pointwise prompts + the family's RM cell", "relevance-token",
            "logit('yes') - logit('no'); reward = the RM cell's standardised score, signed by the answer"),
    "grpo": ("trl GRPOTrainer", "pointwise prompts + grades", "relevance-token",
             "logit('yes') - logit('no'); reward +1 for the right answer, -1 for the wrong one or none"),
    "rloo": ("trl RLOOTrainer", "pointwise prompts + grades", "relevance-token",
             "logit('yes') - logit('no'); reward as GRPO"),
    # encoder families (all-MiniLM-L6-v2): fine-tune the bi-encoder on the same preference pairs
    "contrastive": ("sentence-transformers SentenceTransformerTrainer + MultipleNegativesRankingLoss",
                    "preference pairs as (query, chosen, rejected) triplets", "bi-encoder",
                    "cosine of normalised query and item embeddings (in-batch negatives + the pair's rejected item)"),
    # Reason-to-Rank students (bench.r2r): the teacher's ranking (+ reasons) distilled into the same neuron
    "r2r-pairwise": ("R2R student (transformers Trainer)", "teacher lists", "relevance-token",
                     "logit('yes') - logit('no'); hinge on score differences of teacher-ordered pairs"),
    "r2r-listwise": ("R2R student (transformers Trainer)", "teacher lists", "relevance-token",
                     "logit('yes') - logit('no'); KL(teacher ranking distribution || softmax of scores)"),
    "r2r-direct": ("R2R student (transformers Trainer)", "teacher lists + direct reasons", "relevance-token",
                   "logit('yes') - logit('no'); pairwise + listwise + generation of direct-relevance reasons"),
    "r2r-compare": ("R2R student (transformers Trainer)", "teacher lists + comparative reasons", "relevance-token",
                    "logit('yes') - logit('no'); pairwise + listwise + generation of comparative reasons"),
    "r2r-full": ("R2R student (transformers Trainer)", "teacher lists + both reasons", "relevance-token",
                 "logit('yes') - logit('no'); pairwise + listwise + generation of both kinds of reasons"),
}
METHOD_ORDER = tuple(METHODS)  # table row order; RM before PPO, which needs it
Method = Literal["sft", "rm", "dpo", "ppo", "grpo", "rloo", "contrastive", "r2r-pairwise", "r2r-listwise", "r2r-direct",
                 "r2r-compare", "r2r-full"]
R2R_METHODS = tuple(m for m in METHODS if m.startswith("r2r-"))


def method_rank(name: str) -> tuple:
    """Table row order: the harness's methods in `METHOD_ORDER`, then plugin methods by name."""
    return (METHOD_ORDER.index(name), "") if name in METHOD_ORDER else (len(METHOD_ORDER), name)


def method_info(name: str) -> tuple[str, str, str, str]:
    """(trainer, training data, scorer kind, scoring neuron) of a method: `METHODS`, or a registered plugin's."""
    if name in METHODS:
        return METHODS[name]
    m = lookup("methods", name)
    return (m.trainer, m.data, m.scorer_kind, m.neuron)


class ModelEntry(StrictModel):
    """One model family/size of the grid (a column of Table 1)."""

    model: str = Field(description="preset name (see `rerank-bench models`), HF hub id or local model dir")
    name: Optional[str] = Field(None, description="column label in Table 1; default the model name")
    params: Optional[str] = Field(None, description="parameter count label, e.g. 8B; default the preset's")
    hyper: Optional[dict[str, Any]] = Field(None, description="this model's own hyperparameters over train.hyper, "
                                                              "e.g. {lr: 2.0e-5, full_finetune: true} for a small encoder")
    methods: Optional[list[str]] = Field(None, description="the methods of train.methods this model trains; default all "
                                                           "(an encoder trains rm or contrastive, a causal LM the others)")

    @property
    def label(self) -> str:
        return self.name or self.model


class Hyperparameters(StrictModel):
    epochs: float = Field(8, gt=0, description="passes over the training data (paper: 8)")
    max_steps: Optional[int] = Field(None, ge=1, description="cap on optimizer steps per cell (overrides epochs)")
    lr: float = Field(2e-5, gt=0, description="learning rate (paper: 2e-5)")
    batch_size: int = Field(4, ge=1, description="per-worker batch size (paper: 4)")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=32, description="max tokens per sequence (paper: 2048)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, le=1)
    full_finetune: bool = Field(False, description="train all weights and save a full model instead of a LoRA adapter")
    dpo_beta: float = Field(0.1, gt=0)
    rl_generations: int = Field(4, ge=2, description="completions per prompt (GRPO/RLOO): more samples per group "
                                                     "make differing rewards, hence a gradient, more likely")
    rl_response_length: int = Field(1, ge=1, description="new tokens generated per prompt (PPO/GRPO/RLOO); the "
                                                         "answer is one of the two relevance tokens")
    logging_steps: int = Field(5, ge=1, description="a loss point (and a progress line) every N steps")
    save_steps: int = Field(20, ge=1, description="checkpoint every N steps (resume point after a failure)")
    warmup_steps: int = Field(0, ge=0)
    seed: Optional[int] = Field(None, description="default: the experiment seed")


class TrainScaling(StrictModel):
    """Each cell's Ray Train ScalingConfig."""

    num_workers: int = Field(1, ge=1, description="data-parallel workers per cell")
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, ge=0, description="used when use_gpu")


class TrainConfig(StrictModel):
    models: list[ModelEntry] = Field(min_length=1, description="model families/sizes: the columns of Table 1")
    methods: list[Method] = Field(default_factory=lambda: ["sft", "rm", "dpo", "ppo"],
                                  description=f"training methods: {', '.join(METHODS)}")
    datasets: list[str] = Field(default_factory=list,
                                description="data sources to train on (one cell per source); default the first")
    prompt: Literal["chat", "plain"] = Field("chat", description="relevance prompt style used to train and score")
    hyper: Hyperparameters = Hyperparameters()
    scaling: TrainScaling = TrainScaling()
    max_concurrent_cells: int = Field(2, ge=1, description="cells trained at the same time (as resources allow)")
    max_failures: int = Field(2, ge=-1, description="Ray Train FailureConfig: worker-group restarts per cell")
    storage_path: Optional[str] = Field(
        None, description="Ray Train checkpoint storage: local dir, s3:// or gs://; default results/<exp>/train/ray")
    deepspeed: Optional[Path] = Field(None, description="DeepSpeed JSON config (e.g. configs/deepspeed/zero2.json)")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="torch.distributed backend of each cell")
    depth: int = Field(10, ge=2, description="first-stage candidates per query that unjudged negatives come from")
    negatives: Literal["none", "first-stage"] = Field(
        "none", description="training lists are a query's judged items; 'first-stage' adds its unjudged first-stage "
                            "candidates (top `depth`) as grade-0 negatives, marked and counted")
    score_batch_size: int = Field(16, ge=1, description="batch size of the trained scorers")

    _plugin_methods = field_validator("methods", mode="wrap")(  # and methods a plugin registers
        accept_plugins("methods", METHODS))

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, methods):
        if len(set(methods)) != len(methods):
            raise ValueError("methods repeat")
        return sorted(methods, key=method_rank)

    def hyper_for(self, entry: ModelEntry) -> "Hyperparameters":
        """train.hyper with the model's own overrides."""
        return Hyperparameters.model_validate({**self.hyper.model_dump(), **(entry.hyper or {})})

    def methods_for(self, entry: ModelEntry) -> list[str]:
        return [m for m in self.methods if entry.methods is None or m in entry.methods]

    @model_validator(mode="after")
    def _model_overrides(self):
        for i, entry in enumerate(self.models):
            unknown = [m for m in entry.methods or [] if m not in self.methods]
            if unknown:
                raise ValueError(f"models.{i}.methods: {unknown[0]!r} is not in train.methods {self.methods}")
            try:
                self.hyper_for(entry)
            except ValueError as e:
                first = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"models.{i}.hyper.{where}: {first['msg']}") from None
        return self

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models):
        dupes = repeated([m.label for m in models])
        if dupes:
            raise ValueError(f"model labels repeat: {', '.join(dupes)} (give each a distinct `name`)")
        return models

    @model_validator(mode="after")
    def _ppo_needs_rm(self):
        if "ppo" in self.methods and "rm" not in self.methods:
            raise ValueError("method 'ppo' needs the reward model of its family: add 'rm' to train.methods")
        return self
