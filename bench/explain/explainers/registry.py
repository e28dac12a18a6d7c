"""Every pairwise explainer, declared once: the config lists them by these names.

The harness's own explainers are registered here; another package adds one through an entry point of group
`rerank_bench.explainers` (an `Explainer` subclass, see `bench.registry` and docs/architecture.md).
"""
from __future__ import annotations

from bench.explain.explainers.base import Explainer
from bench.explain.explainers.gradients import IntegratedGradients
from bench.explain.explainers.perturbation import KernelShap, LeaveOneOut, Lime, PartitionShap, RandomValues
from bench.registry import Registry, registry

EXPLAINERS: Registry = registry("explainers")
for _e in (KernelShap(), PartitionShap(), LeaveOneOut(), IntegratedGradients(), Lime(), RandomValues()):
    EXPLAINERS.register(_e.name, _e, replace=True)
LISTWISE = ("ranking_shap",)  # `explain_ranking`: one query's whole ranking, not one pair


def get_explainer(name: str) -> Explainer:
    return EXPLAINERS.lookup(name)


def describe() -> list[dict]:
    """One row per explainer: name, library, whether seeds matter, parameters with defaults."""
    from dataclasses import fields

    return [{"name": e.name, "library": e.library, "stochastic": e.stochastic,
             "params": {f.name: f.default for f in fields(e.Params)}} for e in EXPLAINERS.values()]
