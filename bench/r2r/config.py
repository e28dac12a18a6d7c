"""Config slice of the R2R flow (`r2r:`): the teacher, the student's objectives, the tables (pydantic only)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from bench.config_base import StrictModel
from bench.reason.config import LLMEndpoint

# R2R student variants: name -> (loss terms, reasons distilled by the generation loss)
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "r2r-pairwise": (("pair",), ()),
    "r2r-listwise": (("list",), ()),
    "r2r-direct": (("pair", "list", "gen"), ("direct",)),
    "r2r-compare": (("pair", "list", "gen"), ("compare",)),
    "r2r-full": (("pair", "list", "gen"), ("direct", "compare")),
}
VARIANT_LABELS = {"r2r-pairwise": "w/o reasoning (pairwise loss)", "r2r-listwise": "w/o reasoning (listwise loss)",
                  "r2r-direct": "w/ direct relevance reasoning", "r2r-compare": "w/ comparison reasoning",
                  "r2r-full": "w/ both reasonings"}


class TeacherConfig(LLMEndpoint):
    """The teacher LLM: one of the reason stage's backends (GPT-4o through `openai`, `vllm`, `local`).

    By default it samples as R2R's teacher does (temperature 1.0, top-p 0.9) and answers R2R's single-call
    prompt: one JSON answer per query with the keywords, the ranking and a direct and a comparative reason
    per passage (`prompt: json`); `prompt: separate` asks for the ranking (RankGPT) and every reason in
    separate calls."""

    depth: int = Field(10, ge=2, description="first-stage candidates per query the teacher ranks and explains")
    passage_words: int = Field(60, ge=1, description="each document cut to N words in the teacher's prompts")
    max_new_tokens: int = Field(96, ge=8, description="new tokens per answer of a separate call (the RankGPT "
                                                      "ranking, one reason)")
    temperature: float = Field(1.0, ge=0, le=2, description="sampling temperature (R2R's teacher: 1.0); 0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling (R2R's teacher: 0.9; needs temperature > 0)")
    prompt: Literal["json", "separate"] = Field(
        "json", description="json: R2R's single-call prompt, one JSON answer per query (keywords, ranking, direct "
                            "and comparative reasons; answers repaired and counted by bench.r2r.answers); separate: "
                            "a RankGPT ranking call plus one call per direct and per comparative reason")
    json_max_new_tokens: int = Field(800, ge=32, description="prompt json: new tokens of the one answer per query "
                                                             "(~60-80 per passage of `depth`; a local model's prompt "
                                                             "then has 2048 minus this many tokens)")
    @model_validator(mode="before")
    @classmethod
    def _greedy_teacher(cls, data):
        """temperature 0 (greedy) without a top_p: top_p 1, not R2R's 0.9 (which greedy decoding would ignore)."""
        if isinstance(data, dict) and data.get("temperature") == 0 and "top_p" not in data:
            data = {**data, "top_p": 1.0}
        return data

    json_fallback: Literal["separate", "none"] = Field(
        "separate", description="prompt json: a query whose answer is not JSON of the asked shape (or whose "
                                "request failed) gets its reasons from the separate prompts (separate), or none "
                                "(none: counted as missing); its ranking comes from the identifiers in the text, "
                                "else the first-stage order")


class R2RConfig(StrictModel):
    teacher: TeacherConfig = TeacherConfig()
    max_queries: Optional[int] = Field(None, ge=1, description="teacher annotates the first N training queries")
    reference_queries: int = Field(3, ge=0, description="test queries the teacher also explains: the references of "
                                                        "R2R Table 3 (student reasons vs teacher reasons)")
    margin: float = Field(1.0, gt=0, description="pairwise hinge margin m")
    list_temperature: float = Field(1.0, gt=0, description="listwise target Q = softmax(-(rank - 1) / tau)")
    reason_words: int = Field(60, ge=4, description="teacher reasons are cut to N words as generation targets")
    student_tokens: int = Field(48, ge=4, description="new tokens a student writes per reason (Table 3)")
    baseline: str = Field("BM25", description="the system the R2R tables' paired t-tests compare with")
    loss_weights: Literal["uncertainty", "fixed", "softmax"] = Field(
        "uncertainty", description="how L_pair, L_list and L_gen are combined: uncertainty (learnable, Kendall et al. "
                                   "2018: sum exp(-s_i) L_i + s_i; no weight can vanish), fixed (fixed_weights), or "
                                   "softmax (learnable a, b, c = softmax(w); collapses onto the smallest loss)")
    fixed_weights: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="loss_weights: fixed - the weights "
                                                                                   "of L_pair, L_list, L_gen")
    cost_reference_model: str = Field(
        "gpt-4o", description="the per-reasoning-type cost table (r2r_cost.md) also prices the teacher's token "
                              "counts at this model's list price (reason.prices defaults): what the same tokens "
                              "would cost there")

    @field_validator("cost_reference_model")
    @classmethod
    def _priced(cls, model: str) -> str:
        from bench.reason.config import DEFAULT_PRICES

        if model not in DEFAULT_PRICES:
            raise ValueError(f"no list price for {model!r}; expected one of {', '.join(DEFAULT_PRICES)}")
        return model
