"""Settings of an explainer comparison as plain values (no model, no library): which explainers run with which
parameters (`ExplainerSpec`), the choices they share (`PairSettings`), RankingSHAP's (`RankingSettings`).
Config-level: the explain config slice builds them, the explainers (`bench.explain.explainers`) read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

Removal = Literal["delete", "mask"]


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


@dataclass(frozen=True)
class RankingSettings:
    max_features: int = 16
    nsamples: int = 256  # coalitions (shap enumerates all of them when 2^F - 2 <= nsamples)
    l1_reg: Union[str, float] = "none"
    removal: Removal = "delete"
    mask_token: str = "_"
    ks: tuple[int, ...] = (1, 3, 5)
