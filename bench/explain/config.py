"""Config slice of the explain stage (pydantic only, light to import)."""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from bench.config_base import StrictModel


class ExplainConfig(StrictModel):
    """KernelSHAP attributions of re-ranked items, computed in a pool of Ray actors.

    The model explained is a re-rank system's `Scorer` (one score per query-item pair); the
    features are the item's words (default) or its tokenizer pieces; an absent feature is
    deleted from the item text (or replaced by `mask_token`).
    """

    systems: Optional[list[str]] = Field(
        None, description="re-rank systems to explain (names); default every configured rerank system")
    top_items: int = Field(1, ge=1, le=100, description="top re-ranked items explained per query")
    max_queries: Optional[int] = Field(
        None, ge=1, description="explain only the first N queries of the evaluated split (sorted ids)")
    unit: Literal["word", "token"] = Field(
        "word", description="SHAP features: whitespace words (sub-word pieces merged) or tokenizer pieces")
    removal: Literal["delete", "mask"] = Field(
        "delete", description="an absent feature is deleted from the text, or replaced by mask_token")
    mask_token: str = Field("_", description="placeholder text for an absent feature when removal=mask")
    nsamples: int = Field(256, ge=4, description="coalitions evaluated per item (capped at 2^M-2 by shap)")
    l1_reg: Union[float, str] = Field(
        "none", description="shap KernelExplainer l1_reg: 'none' (every feature gets a value), 'aic', 'bic', "
                            "'num_features(N)' or an alpha. shap's own default, num_features(10), would "
                            "silently zero all but 10 features")
    k: int = Field(10, ge=1, description="top-k words (by attribution) given to the reason prompt")
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5, 10],
                          description="k values for comprehensiveness / sufficiency / AOPC (faithfulness)")
    max_item_tokens: Optional[int] = Field(
        None, ge=1, description="cut the explained item to its first N tokens; default the scorer's item budget")
    batch_size: int = Field(64, ge=1, description="coalitions per padded forward batch")
    actors: int = Field(1, ge=1, description="Ray actors explaining items in parallel, each loads its scorer once")
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    seed: Optional[int] = Field(None, description="numpy seed before each item; default the experiment seed")

    @field_validator("l1_reg")
    @classmethod
    def _l1(cls, v):
        if isinstance(v, str) and not (v in ("none", "aic", "bic") or re.fullmatch(r"num_features\(\d+\)", v)):
            raise ValueError(f"expected 'none', 'aic', 'bic', 'num_features(N)' or a number, got {v!r}")
        return v

    @field_validator("ks")
    @classmethod
    def _ks(cls, v):
        if any(k < 1 for k in v):
            raise ValueError(f"every k must be >= 1, got {v}")
        return sorted(set(v))


# ------------------------------------------------------------------------------ explainer comparison
DEFAULT_EXPLAINERS = ("kernel_shap", "partition_shap", "loo", "integrated_gradients", "lime", "random")


class ExplainerEntry(StrictModel):
    """One explainer of a comparison: a name of `bench.explain.explainers.EXPLAINERS` and its parameters."""

    name: str = Field(description="kernel_shap | partition_shap | loo | integrated_gradients | lime | random")
    label: Optional[str] = Field(None, description="key of its results; default the name (list one explainer twice "
                                                   "with different parameters under two labels)")
    params: dict[str, Any] = Field(default_factory=dict, description="the explainer's parameters, e.g. {nsamples: 256}")

    @model_validator(mode="after")
    def _known(self):
        from bench.explain.explainers.registry import get_explainer

        get_explainer(self.name).params(self.params)  # unknown names / parameters say what is expected
        return self


class RankingShapConfig(StrictModel):
    """RankingSHAP (listwise): word-type features of one query's ranking."""

    enabled: bool = False
    max_features: int = Field(16, ge=1, description="the query's word types, then the most frequent candidate words")
    nsamples: int = Field(256, ge=4, description="coalitions; each re-scores every candidate")
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5], description="k of validity@k / completeness@k")


class ExplainersConfig(StrictModel):
    """Several explainers compared on the same items, under one removal rule and one set of metrics."""

    methods: list[ExplainerEntry] = Field(
        default_factory=lambda: [ExplainerEntry(name=n) for n in DEFAULT_EXPLAINERS],
        description="explainers run on every item, with their parameters")
    removal: Literal["delete", "mask"] = Field("delete", description="one rule for every explainer of the comparison")
    mask_token: str = "_"
    batch_size: int = Field(64, ge=1, description="rows per model call where a library batches them "
                                                  "(Captum, shap Partition)")
    metrics: bool = Field(True, description="ERASER / ferret AOPC, NAOPC, tau with leave-one-out per item")
    erasure_words: Literal["item", "all"] = Field(
        "item", description="words the erasure metrics remove: the item's (ERASER keeps the query) or all")
    aopc_bins: Literal["eraser", "ferret"] = Field(
        "eraser", description="eraser: 1, 5, 10, 20, 50 % (rounded up); ferret: 10 %..100 %, positive words only")
    naopc: bool = True
    naopc_exact_max_words: int = Field(10, ge=1, description="exact NAOPC bounds up to this many words (2^n rows)")
    naopc_beam_size: int = Field(1, ge=1, description="beam width of the NAOPC bounds above that")
    naopc_max_words: int = Field(40, ge=1, description="no NAOPC for items with more erasure words")
    repeat_seed_offset: Optional[int] = Field(1, description="stability: stochastic explainers again with seed + "
                                                             "offset; null = off")
    ranking: RankingShapConfig = Field(default_factory=RankingShapConfig)

    @field_validator("methods")
    @classmethod
    def _unique(cls, v):
        from bench.config_base import repeated

        twice = repeated([m.label or m.name for m in v])
        if twice:
            raise ValueError(f"explainers listed twice: {twice}; give each a distinct label")
        return v

    def pair_settings(self):
        from bench.explain.explainers import PairSettings

        return PairSettings(**self.model_dump(exclude={"methods", "ranking"}))

    def ranking_settings(self):
        from bench.explain.explainers import RankingSettings

        return RankingSettings(max_features=self.ranking.max_features, nsamples=self.ranking.nsamples,
                               removal=self.removal, mask_token=self.mask_token, ks=tuple(self.ranking.ks))
