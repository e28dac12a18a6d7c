"""The one explainer interface, its result type and the settings shared by a comparison."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from bench.explain.explainers.pair import ExplainedPair, WordGame
from bench.explain.settings import PairSettings


@dataclass
class Attribution:
    """What an explainer returns: one value per word of the pair, and method-specific extras."""

    values: np.ndarray
    extras: dict = field(default_factory=dict)
    backward_rows: int = 0  # rows that also ran a backward pass (gradient methods)
    forward_rows: int | None = None  # set by explainers that do not query the WordGame


class Unsupported(Exception):
    """The explainer cannot explain this scorer (e.g. gradients through a bi-encoder)."""


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
