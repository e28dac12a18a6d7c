"""The one explainer interface, its result type and the settings shared by a comparison."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np

from bench.explain.explainers.pair import ExplainedPair, Removal, WordGame


@dataclass(frozen=True)
class PairSettings:
    """Choices shared by every explainer of one comparison (recorded with each result).

    removal / mask_token: how an absent word is removed, the same for every explainer.
    batch_size: rows per model call where a library asks for it (Captum's perturbations_per_eval,
    shap Partition's batch_size); the scorer pads and batches internally by its own batch size.
    metrics: compute the faithfulness metrics of every explainer on the item (extra model rows,
    counted apart from the explainers' own). erasure_words: the words ERASER/ferret/NAOPC remove,
    `item` (ERASER: the query is always kept) or `all`. aopc_bins: `eraser` (1, 5, 10, 20, 50 %) or
    `ferret` (10 %..100 %, positive words only). naopc: compute NAOPC (exact bounds up to
    `naopc_exact_max_words` words, beam search of width `naopc_beam_size` above, none above
    `naopc_max_words`). repeat_seed_offset: stochastic explainers run a second time with
    seed + offset for stability (None: off).
    """

    removal: Removal = "delete"
    mask_token: str = "_"
    batch_size: int = 64
    metrics: bool = True
    erasure_words: Literal["item", "all"] = "item"
    aopc_bins: Literal["eraser", "ferret"] = "eraser"
    naopc: bool = True
    naopc_exact_max_words: int = 10
    naopc_beam_size: int = 1
    naopc_max_words: int = 40
    repeat_seed_offset: int | None = 1

    def __post_init__(self):
        if self.removal not in ("delete", "mask"):
            raise ValueError(f"removal must be 'delete' or 'mask', got {self.removal!r}")
        if self.erasure_words not in ("item", "all"):
            raise ValueError(f"erasure_words must be 'item' or 'all', got {self.erasure_words!r}")
        if self.aopc_bins not in ("eraser", "ferret"):
            raise ValueError(f"aopc_bins must be 'eraser' or 'ferret', got {self.aopc_bins!r}")
        if self.batch_size < 1 or self.naopc_beam_size < 1:
            raise ValueError("batch_size and naopc_beam_size must be >= 1")


@dataclass
class Attribution:
    """What an explainer returns: one value per word of the pair, and method-specific extras."""

    values: np.ndarray
    extras: dict = field(default_factory=dict)
    backward_rows: int = 0  # rows that also ran a backward pass (gradient methods)
    forward_rows: int | None = None  # set by explainers that do not query the WordGame


class Unsupported(Exception):
    """The explainer cannot explain this scorer (e.g. gradients through a bi-encoder)."""


@dataclass(frozen=True)
class ExplainerSpec:
    """One explainer of a comparison: its registry name and its parameters."""

    name: str
    params: dict = field(default_factory=dict)
    label: str | None = None  # the key of its results; default the name (set it to list one explainer twice)

    @property
    def key(self) -> str:
        return self.label or self.name

    @classmethod
    def of(cls, spec) -> "ExplainerSpec":
        """From a name, a {"name": ..., ["label": ...,] **params} or {"name": ..., "params": {...}} dict, or a spec."""
        if isinstance(spec, ExplainerSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict):
            spec = dict(spec)
            name, label = spec.pop("name"), spec.pop("label", None)
            params = spec.pop("params", None) or {}
            return cls(name, {**params, **spec}, label)
        if hasattr(spec, "name") and hasattr(spec, "params"):  # the pydantic config entry
            return cls(spec.name, dict(spec.params or {}), getattr(spec, "label", None))
        raise TypeError(f"not an explainer spec: {spec!r}")


class Explainer(abc.ABC):
    """Item in, word attributions out. Subclasses declare their name, library, parameters."""

    name: ClassVar[str]
    library: ClassVar[str]  # what computes it, e.g. "shap.KernelExplainer"
    stochastic: ClassVar[bool] = True  # a second seed can give other values (stability is measured)
    Params: ClassVar[type]

    def params(self, given: dict) -> Any:
        """The explainer's parameter dataclass from a dict; unknown names are an error."""
        known = {f.name for f in fields(self.Params)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"explainer {self.name!r}: unknown parameter(s) {unknown}; expected {sorted(known)}")
        return self.Params(**given)

    @abc.abstractmethod
    def explain(self, scorer, pair: ExplainedPair, game: WordGame, params, settings: PairSettings,
                seed: int) -> Attribution:
        """Values for `pair.words` (query words, then item words)."""
