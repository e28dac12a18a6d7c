"""Training methods as registered entries: the harness's own (`bench.train.config.METHODS`) and any other
package's, through an entry point of group `rerank_bench.methods` naming a `TrainingMethod` (subclass or
instance). A method turns one cell's settings into a Hugging Face / trl trainer; the grid, Ray Train lanes,
checkpoints, held-out scoring and Table 1 are the harness's and apply to every method alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bench.registry import Registry, registry
from bench.train.config import METHODS


@dataclass(frozen=True)
class TrainingMethod:
    """One training method. A plugin subclasses it, sets the class attributes and implements `build`."""

    name: ClassVar[str]
    trainer: ClassVar[str] = ""  # what trains it, e.g. "trl SFTTrainer" (the CLI help and README table)
    data: ClassVar[str] = "pointwise items"  # what it trains on, in words
    rows: ClassVar[str] = "train_items"  # the cell's rows it reads: train_items (pointwise) or train_pairs
    scorer_kind: ClassVar[str] = "relevance-token"  # the scorer that reads the trained cell
    neuron: ClassVar[str] = "logit('yes') - logit('no') at the answer position of the relevance prompt"

    def build(self, cfg: dict, common: dict, callback, stats: dict) -> tuple[Any, Any]:
        """(trainer, tokenizer) for one cell. `cfg`: the cell (`model_dir`, `hyper`, `prompt`, `data`, `seed`, ...);
        `common`: the TrainingArguments every method shares (output dir, learning rate, steps, seed, precision);
        `callback`: the harness's progress/checkpoint callback, to pass to the trainer; `stats`: fitting counts."""
        raise NotImplementedError


@dataclass(frozen=True)
class BuiltinMethod(TrainingMethod):
    """A method of `METHODS`, built by `bench.train.methods.build_trainer`."""

    method: str = ""

    def build(self, cfg: dict, common: dict, callback, stats: dict):
        raise RuntimeError(f"{self.method!r} is built by bench.train.methods.build_trainer")


def _builtin(name: str) -> BuiltinMethod:
    trainer, data, kind, neuron = METHODS[name]
    cls = type(f"Builtin_{name.replace('-', '_')}", (BuiltinMethod,),
               {"name": name, "trainer": trainer, "data": data, "scorer_kind": kind, "neuron": neuron,
                "rows": "train_pairs" if name in ("rm", "dpo", "contrastive") else
                        "r2r_lists" if name.startswith("r2r-") else "train_items", "__module__": __name__})
    return cls(method=name)


METHOD_REGISTRY: Registry = registry("methods")
for _name in METHODS:
    METHOD_REGISTRY.register(_name, _builtin(_name), replace=True)
