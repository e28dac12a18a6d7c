"""Perturbation explainers over the word-presence vector: each queries `WordGame` (batched rows).

kernel_shap     shap.KernelExplainer (background: one all-absent row), `l1_reg` explicit.
partition_shap  shap.PartitionExplainer with a `shap.maskers.Partition` over the presence vector
                and a text-order clustering (query | item, each a balanced binary tree over
                contiguous words). Chosen over `shap.maskers.Text` because the pair is two texts
                (Text masks one string), and because Text's units are its tokenizer's, not our
                words: over the presence vector every explainer sees the same words and the same
                delete / mask rule.
loo             Captum FeatureAblation: value_i = f(x) - f(x without word i); d + 1 rows.
lime            Captum Lime: Bernoulli(0.5) word-presence samples, the lime package's text
                defaults otherwise (Ridge(alpha=1), cosine-distance kernel of width 0.25 = lime's
                width 25 on 100 x distance).
random          seeded standard-normal values, 0 rows: the floor.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from bench.explain.explainers.base import Attribution, Explainer, PairSettings
from bench.explain.explainers.pair import ExplainedPair, WordGame


def _torch_game(game: WordGame):
    """A Captum forward function: float tensor of presence rows -> tensor of scores."""
    import torch

    def forward(z):
        return torch.as_tensor(game(z.detach().cpu().numpy()), dtype=torch.float64)

    return forward


# ------------------------------------------------------------------------------ KernelSHAP
@dataclass(frozen=True)
class KernelShapParams:
    nsamples: int = 256  # coalitions (shap caps it at 2^M - 2 and then enumerates them all)
    l1_reg: Union[str, float] = "none"  # explicit: shap's default num_features(10) zeroes all but 10 words


class KernelShap(Explainer):
    name = "kernel_shap"
    library = "shap.KernelExplainer"
    Params = KernelShapParams

    def explain(self, scorer, pair, game, params, settings, seed):
        from bench.explain.kernel_shap import kernel_shap_values

        values, base = kernel_shap_values(game, pair.n_words, params.nsamples, params.l1_reg, seed)
        return Attribution(values, {"base_value": base})


# ------------------------------------------------------------------------------ Partition SHAP
def text_order_linkage(n_query: int, n_item: int) -> np.ndarray:
    """scipy-format linkage over the words in text order: the query's words and the item's words
    each merge as a balanced binary tree of contiguous spans, then the two sides merge. Heights are
    the subtree depths, so they grow towards the root as a linkage requires."""
    rows: list[list[float]] = []
    n = n_query + n_item

    def build(lo: int, hi: int) -> tuple[int, int]:
        if hi - lo == 1:
            return lo, 0
        mid = (lo + hi) // 2
        (a, ha), (b, hb) = build(lo, mid), build(mid, hi)
        rows.append([a, b, max(ha, hb) + 1, hi - lo])
        return n + len(rows) - 1, max(ha, hb) + 1

    sides = [(lo, hi) for lo, hi in ((0, n_query), (n_query, n)) if hi > lo]
    roots = [build(lo, hi) for lo, hi in sides]
    if len(roots) == 2:
        (a, ha), (b, hb) = roots
        rows.append([a, b, max(ha, hb) + 1, n])
    # scipy wants the merges by non-decreasing height: reorder (a parent is higher than its
    # children, so they stay before it) and renumber the clusters accordingly
    order = sorted(range(len(rows)), key=lambda r: (rows[r][2], r))
    new_id = {n + old: n + new for new, old in enumerate(order)}
    relabel = lambda c: new_id.get(int(c), int(c))  # noqa: E731 - leaves keep their index
    return np.asarray([[relabel(rows[r][0]), relabel(rows[r][1]), rows[r][2], rows[r][3]] for r in order],
                      dtype=np.float64)


@dataclass(frozen=True)
class PartitionShapParams:
    max_evals: int = 500  # shap's default


class PartitionShap(Explainer):
    name = "partition_shap"
    library = "shap.PartitionExplainer + shap.maskers.Partition (text-order clustering)"
    stochastic = False  # no sampling: the same tree and budget give the same values
    Params = PartitionShapParams

    def explain(self, scorer, pair, game, params, settings, seed):
        import shap

        n = pair.n_words
        if n == 1:  # a one-leaf tree has no linkage: the value is exact with two rows
            f = game(np.array([[0.0], [1.0]]))
            return Attribution(np.array([f[1] - f[0]]), {"base_value": float(f[0]), "clustering": "single word"})
        logging.getLogger("shap").setLevel(logging.WARNING)
        masker = shap.maskers.Partition(np.zeros((1, n)), clustering=text_order_linkage(pair.n_query, n - pair.n_query))
        explainer = shap.PartitionExplainer(game, masker)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = explainer(np.ones((1, n)), max_evals=params.max_evals, batch_size=settings.batch_size, silent=True)
        return Attribution(np.asarray(out.values, dtype=np.float64).reshape(-1)[:n],
                           {"base_value": float(np.asarray(out.base_values).reshape(-1)[0]),
                            "clustering": "text order: query | item, balanced binary trees"})


# ------------------------------------------------------------------------------ leave-one-out
@dataclass(frozen=True)
class LooParams:
    pass


class LeaveOneOut(Explainer):
    name = "loo"
    library = "captum.attr.FeatureAblation"
    stochastic = False
    Params = LooParams

    def explain(self, scorer, pair, game, params, settings, seed):
        import torch
        from captum.attr import FeatureAblation

        ones = torch.ones(1, pair.n_words, dtype=torch.float64)
        values = FeatureAblation(_torch_game(game)).attribute(ones, baselines=0.0,
                                                              perturbations_per_eval=settings.batch_size)
        return Attribution(values.detach().numpy().reshape(-1).astype(np.float64))


# ------------------------------------------------------------------------------ LIME
@dataclass(frozen=True)
class LimeParams:
    n_samples: int = 256
    model: Literal["ridge", "linear", "lasso"] = "ridge"  # the surrogate fitted to the samples
    alpha: float = 1.0  # ridge / lasso regularisation (lime's default Ridge(alpha=1))
    kernel_width: float = 0.25  # Captum's exp kernel on cosine distance; 0.25 = lime's text kernel


def _surrogate(params: LimeParams):
    from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression, SkLearnRidge

    if params.model == "ridge":
        return SkLearnRidge(alpha=params.alpha)
    if params.model == "lasso":
        return SkLearnLasso(alpha=params.alpha)
    if params.model == "linear":
        return SkLearnLinearRegression()
    raise ValueError(f"lime model must be ridge, linear or lasso, got {params.model!r}")


class Lime(Explainer):
    name = "lime"
    library = "captum.attr.Lime"
    Params = LimeParams

    def explain(self, scorer, pair, game, params, settings, seed):
        import torch
        from captum.attr import Lime as CaptumLime
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        similarity = get_exp_kernel_similarity_function("cosine", kernel_width=params.kernel_width)
        lime = CaptumLime(_torch_game(game), interpretable_model=_surrogate(params), similarity_func=similarity)
        ones = torch.ones(1, pair.n_words, dtype=torch.float64)
        with torch.random.fork_rng(devices=[]):  # Captum samples with torch's generator: seed it, leave it as it was
            torch.manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = lime.attribute(ones, baselines=torch.zeros_like(ones), n_samples=params.n_samples,
                                        perturbations_per_eval=settings.batch_size)
        return Attribution(values.detach().numpy().reshape(-1).astype(np.float64))


# ------------------------------------------------------------------------------ random floor
@dataclass(frozen=True)
class RandomParams:
    pass


class RandomValues(Explainer):
    name = "random"
    library = "numpy.random.default_rng(seed).standard_normal"
    Params = RandomParams

    def explain(self, scorer, pair: ExplainedPair, game: WordGame, params, settings: PairSettings, seed: int):
        return Attribution(np.random.default_rng(seed).standard_normal(pair.n_words))
