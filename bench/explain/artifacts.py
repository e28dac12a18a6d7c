"""The typed artifacts of the explain -> reason -> explanation-metrics stages.

Items stay JSON-shaped (they are written as JSONL and read by figures, tables and the site), so
they are `TypedDict`s: the fields are declared here once, for readers and type checkers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict


class TopWord(TypedDict):
    index: int
    word: str
    value: float


class ExplainedItem(TypedDict, total=False):
    """One re-ranked item with its KernelSHAP attributions (`bench.explain.kernel_shap.explain_item`)."""

    system: str
    dataset: str
    qid: str
    docid: str
    rank: int
    score: float
    query: str
    text: str  # the item as the scorer ranked it (or its first explain.max_item_tokens tokens)
    url: str
    title: str
    status: str  # ok | k_clamped | empty | error
    message: str
    input: dict  # {query_cut, item_cut, explained}: how the explained input relates to the ranked one
    scored_query: str
    unit: str
    removal: str
    truncated: bool
    tokens: list[str]
    token_word: list[int]
    words: list[str]
    token_values: Optional[list[float]]
    word_values: list[float]
    base_value: float
    full_score: float  # base_value + sum(values): the ranked score (KernelSHAP's efficiency)
    topk: list[TopWord]
    k: int
    k_clamped: bool
    erasure: dict[str, dict[str, float]]  # k -> {removed, kept, random}: scores after erasing words
    coalitions: int
    forward_rows: int
    forward_calls: int
    seconds: float


class Explanation(TypedDict, total=False):
    """One LLM explanation (`bench.reason.backends.Reply` plus its prompt)."""

    text: Optional[str]
    status: str  # ok | error | malformed | skipped
    message: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    attempts: int
    seconds: float
    prompt: str


class ReasonedItem(ExplainedItem, total=False):
    explanations: dict[str, Explanation]  # variant (with / without attributions) -> explanation


class ReasonSummary(TypedDict, total=False):
    backend: str
    model: str
    prompts: int
    ok: int
    cached: int
    failed: dict[str, int]
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Optional[float]


@dataclass
class ExplainArtifact:
    key: str
    items: list[ExplainedItem]


@dataclass
class ReasonArtifact:
    key: str
    items: list[ReasonedItem]
    summary: ReasonSummary
