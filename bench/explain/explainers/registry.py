"""Every pairwise explainer, declared once: the config lists them by these names."""
from __future__ import annotations

from bench.explain.explainers.base import Explainer
from bench.explain.explainers.gradients import IntegratedGradients
from bench.explain.explainers.perturbation import KernelShap, LeaveOneOut, Lime, PartitionShap, RandomValues

EXPLAINERS: dict[str, Explainer] = {e.name: e for e in (
    KernelShap(), PartitionShap(), LeaveOneOut(), IntegratedGradients(), Lime(), RandomValues())}
LISTWISE = ("ranking_shap",)  # `explain_ranking`: one query's whole ranking, not one pair


def get_explainer(name: str) -> Explainer:
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise ValueError(f"unknown explainer {name!r}; expected one of {sorted(EXPLAINERS)}") from None


def describe() -> list[dict]:
    """One row per explainer: name, library, whether seeds matter, parameters with defaults."""
    from dataclasses import fields

    return [{"name": e.name, "library": e.library, "stochastic": e.stochastic,
             "params": {f.name: f.default for f in fields(e.Params)}} for e in EXPLAINERS.values()]
