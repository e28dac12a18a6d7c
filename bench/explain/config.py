"""Config slice of the explain stage (pydantic only, light to import)."""
from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import Field, field_validator

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
