"""Config slice of the explain stage (pydantic only, light to import)."""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from bench.config_base import StrictModel


# ------------------------------------------------------------------------------ explainers of the stage
PAIRWISE_NAMES = ("kernel_shap", "partition_shap", "loo", "integrated_gradients", "lime", "random")
DEFAULT_EXPLAINERS = PAIRWISE_NAMES  # every pairwise explainer: an explainer comparison's default list
RANKING_SHAP = "ranking_shap"


class RankingShapConfig(StrictModel):
    """RankingSHAP (listwise, `bench.explain.explainers.explain_ranking`): word-type features of one query's
    ranking of its top re-ranked candidates; the parameters of a `ranking_shap` entry of `explain.explainers`."""

    candidates: int = Field(5, ge=2, le=100, description="the query's top re-ranked candidates whose ranking is "
                                                         "explained")
    max_features: int = Field(16, ge=1, description="the query's word types, then the most frequent candidate words")
    nsamples: int = Field(256, ge=4, description="coalitions; each re-scores every candidate")
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5], description="k of validity@k / completeness@k")


class ExplainerEntry(StrictModel):
    """One explainer of the explain stage: a name of `bench.explain.explainers.EXPLAINERS` (or `ranking_shap`,
    the listwise one) and its parameters. In YAML a bare name stands for `{name: <name>}`."""

    name: str = Field(description="kernel_shap | partition_shap | loo | integrated_gradients | lime | random | "
                                  "ranking_shap (listwise: one query's ranking)")
    label: Optional[str] = Field(None, description="key of its results; default the name (list one explainer twice "
                                                   "with different parameters under two labels)")
    params: dict[str, Any] = Field(default_factory=dict, description="the explainer's parameters, e.g. {nsamples: 256}")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known(self):
        if self.name == RANKING_SHAP:
            RankingShapConfig(**self.params)  # unknown / bad parameters say what is expected
            return self
        from bench.registry import lookup

        try:
            lookup("explainers", self.name).params(self.params)
        except ValueError as e:
            if "unknown explainer" in str(e):
                raise ValueError(f"{e} or {RANKING_SHAP!r}") from None
            raise
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class ExplainConfig(StrictModel):
    """Attributions of re-ranked items by every configured explainer, computed on the data plane.

    The model explained is a re-rank system's `Scorer` (one score per query-item pair); each explainer
    (`explainers`, default KernelSHAP alone) attributes the pair's words, query and item, the same words
    for all (sub-word pieces merged), an absent word deleted (or replaced by `mask_token`: one rule for
    all). The first pairwise explainer is the primary one: its top-k item words go to the reason prompt,
    Fig. 4 and the leaderboard's comp@k / suff@k. `ranking_shap` explains each query's ranking.
    """

    systems: Union[Literal["all"], list[str], None] = Field(
        None, description="re-rank systems to explain: names, or 'all' (= null, the default): every model-based "
                          "system of the run, configured, trained cells and the tuned trial")
    explainers: list[ExplainerEntry] = Field(
        default_factory=lambda: [ExplainerEntry(name="kernel_shap")], min_length=1,
        description="explainers run on every item, each with its parameters (a bare name takes its defaults); the "
                    "first pairwise one is primary. kernel_shap takes nsamples / l1_reg below unless its params say")
    top_items: int = Field(1, ge=1, le=100, description="top re-ranked items explained per query")
    max_queries: Optional[int] = Field(
        None, ge=1, description="explain only the first N queries of the evaluated split (sorted ids)")
    unit: Literal["word", "token"] = Field(
        "word", description="attribution units: whitespace words with sub-word pieces merged (the explain stage "
                            "attributes words only; 'token' is KernelSHAP over tokenizer pieces in the serving API)")
    removal: Literal["delete", "mask"] = Field(
        "delete", description="an absent word is deleted from the text, or replaced by mask_token: one recorded "
                              "choice for every explainer (decoder LLMs have no mask token of their own)")
    mask_token: str = Field("_", description="placeholder text for an absent feature when removal=mask")
    nsamples: int = Field(256, ge=4, description="kernel_shap's coalitions per item unless its entry's params give "
                                                 "them (capped at 2^M-2 by shap)")
    l1_reg: Union[float, str] = Field(
        "none", description="kernel_shap's l1_reg unless its entry's params give it: 'none' (every feature gets a "
                            "value), 'aic', 'bic', 'num_features(N)' or an alpha. shap's own default, "
                            "num_features(10), would silently zero all but 10 features")
    k: int = Field(10, ge=1, description="top-k item words (by the primary explainer's values) given to the reason "
                                         "prompt and Fig. 4")
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5, 10],
                          description="k values of comp@k / suff@k / random-k comprehensiveness (the primary "
                                      "explainer's top-k item words removed / kept alone)")
    max_item_tokens: Optional[int] = Field(
        None, ge=1, description="cut the explained item to its first N tokens; default the scorer's item budget")
    batch_size: int = Field(64, ge=1, description="rows per padded forward batch (and per library call where a "
                                                  "library batches: Captum, shap Partition)")
    metrics: bool = Field(True, description="per item and explainer: ERASER / ferret AOPC, NAOPC, tau with "
                                            "leave-one-out (extra model rows, counted apart from each explainer's)")
    erasure_words: Literal["item", "all"] = Field(
        "item", description="words the AOPC / NAOPC metrics remove: the item's (ERASER keeps the query) or all")
    aopc_bins: Literal["eraser", "ferret"] = Field(
        "eraser", description="eraser: 1, 5, 10, 20, 50 % of the words (rounded up); ferret: 10 %..100 %, positive "
                              "words only (the two AOPCs are not comparable)")
    naopc: bool = Field(True, description="normalised AOPC (Edin et al. 2025): AOPC between its lowest and highest "
                                          "value over all removal orders of the item")
    naopc_exact_max_words: int = Field(
        6, ge=1, description="exact NAOPC bounds up to this many erasure words (2^n rows per item)")
    naopc_beam_size: int = Field(1, ge=1, description="beam width of the NAOPC bounds above that (~B n^2 rows)")
    naopc_max_words: int = Field(
        12, ge=1, description="no NAOPC (status skipped) for items with more erasure words: its bounds cost ~n^2 rows")
    repeat_seed_offset: Optional[int] = Field(
        1, description="stability: stochastic explainers run again with seed + offset (Kendall tau between the "
                       "two); null = off")
    ground_truth: bool = Field(
        False, description="also run every pairwise explainer, with its parameters here, on the analytic test scorer "
                           "(bench.explain.ground_truth: exact Shapley / leave-one-out values) and record each one's "
                           "largest absolute error in summary.json")
    actors: int = Field(1, ge=1, description="Ray actors explaining items in parallel, each loads its scorer once")
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    seed: Optional[int] = Field(None, description="seed of every item (explainers' sampling, random words); default "
                                                  "the experiment seed")

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

    @field_validator("explainers")
    @classmethod
    def _explainers(cls, v):
        from bench.config_base import repeated

        twice = repeated([e.key for e in v])
        if twice:
            raise ValueError(f"explainers listed twice: {twice}; give each a distinct label")
        if all(e.name == RANKING_SHAP for e in v):
            raise ValueError(f"expected at least one pairwise explainer ({', '.join(PAIRWISE_NAMES)}) besides "
                             f"{RANKING_SHAP}: its top-k words feed the reason prompt and Fig. 4")
        if sum(e.name == RANKING_SHAP for e in v) > 1:
            raise ValueError(f"{RANKING_SHAP} listed twice: one listwise explanation per query")
        return v

    # ---------------------------------------------------------------- views for the explainer library
    def pair_entries(self) -> list[ExplainerEntry]:
        return [e for e in self.explainers if e.name != RANKING_SHAP]

    def ranking_entry(self) -> Optional[ExplainerEntry]:
        return next((e for e in self.explainers if e.name == RANKING_SHAP), None)

    @property
    def primary(self) -> str:
        """The label of the primary explainer: the first pairwise one."""
        return self.pair_entries()[0].key

    def explainer_specs(self) -> list:
        """`ExplainerSpec`s of the pairwise explainers; kernel_shap takes `nsamples` / `l1_reg` unless given."""
        from bench.explain.settings import ExplainerSpec

        out = []
        for e in self.pair_entries():
            params = dict(e.params)
            if e.name == "kernel_shap":
                params = {"nsamples": self.nsamples, "l1_reg": self.l1_reg, **params}
            out.append(ExplainerSpec(e.name, params, e.label))
        return out

    def pair_settings(self):
        from bench.explain.settings import PairSettings

        return PairSettings(removal=self.removal, mask_token=self.mask_token, batch_size=self.batch_size,
                            metrics=self.metrics, erasure_words=self.erasure_words, aopc_bins=self.aopc_bins,
                            naopc=self.naopc, naopc_exact_max_words=self.naopc_exact_max_words,
                            naopc_beam_size=self.naopc_beam_size, naopc_max_words=self.naopc_max_words,
                            repeat_seed_offset=self.repeat_seed_offset)

    def ranking_config(self) -> Optional[RankingShapConfig]:
        e = self.ranking_entry()
        return None if e is None else RankingShapConfig(**e.params)

    def ranking_settings(self):
        from bench.explain.settings import RankingSettings

        r = self.ranking_config() or RankingShapConfig()
        return RankingSettings(max_features=r.max_features, nsamples=r.nsamples, l1_reg=self.l1_reg,
                               removal=self.removal, mask_token=self.mask_token, ks=tuple(r.ks))
