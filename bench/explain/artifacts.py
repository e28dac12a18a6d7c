"""The typed artifacts of the explain -> reason -> explanation-metrics stages.

Items stay JSON-shaped (they are written as JSONL and read by figures, tables and the site), so
they are `TypedDict`s: the fields are declared here once, for readers and type checkers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, TypedDict


class TopWord(TypedDict):
    index: int
    word: str
    value: float


class ExplainedItem(TypedDict, total=False):
    """One re-ranked item with every explainer's attributions (`bench.explain.item.explain_one`); the top-level
    words, values, top-k and erasure scores are the primary explainer's, over the item's words."""

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
    base_value: float  # the primary explainer's base value (every word absent), where it has one
    full_score: float  # the ranked score (KernelSHAP: base_value + the sum of every pair word's value)
    topk: list[TopWord]
    k: int
    k_clamped: bool
    erasure: dict[str, dict[str, float]]  # k -> {removed, kept, random}: scores after erasing words
    primary: str  # label of the primary explainer (the first pairwise one of explain.explainers)
    pair_words: list[str]  # the words every explainer attributes: query words, then item words
    sides: list[str]  # "query" | "item" per pair word
    query_values: list[float]  # the primary explainer's values of the query words
    explainers: dict[str, dict]  # label -> `explain_pair` result: values, cost, stability, metrics
    settings: dict  # the PairSettings shared by every explainer (removal rule, metric settings)
    metric_evaluations: int
    erasure_evaluations: int
    evaluations: int  # model rows of the item in all: explainers (+ stability reruns), metrics, erasure
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
    rankings: list[dict] = field(default_factory=list)  # RankingSHAP per query (`explain_ranking` + system, dataset)


@dataclass
class ReasonArtifact:
    key: str
    items: list[ReasonedItem]
    summary: ReasonSummary
