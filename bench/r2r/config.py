"""Config slice of the R2R flow (`r2r:`): the teacher, the student's objectives, the tables (pydantic only)."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

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
    """The teacher LLM: one of the reason stage's backends (GPT-4o through `openai`, `vllm`, `local`)."""

    depth: int = Field(10, ge=2, description="first-stage candidates per query the teacher ranks and explains")
    passage_words: int = Field(60, ge=1, description="each document cut to N words in the teacher's prompts")
    max_new_tokens: int = Field(96, ge=8)


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
