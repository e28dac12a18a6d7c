"""The explained pair and its word game: the units every explainer attributes, and the model
function over word-presence vectors that the perturbation explainers query.

Word units are the same for every method: the scorer's tokenizer pieces merged by offsets into
whitespace words (`bench.explain.words.segment`), for the query and for the item, both as the
scorer ranked them (`scorer.fit(query, item)`: the one fitting rule). The query's words come first,
then the item's; each word has a side. A coalition is a 0/1 vector over all of them; an absent
word is deleted from its text, or replaced by `mask_token` (`removal`, one choice for every
explainer of a comparison: decoder LLMs have no mask token of their own).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.explain.settings import Removal
from bench.explain.words import Segmentation, compose, segment

QUERY, ITEM = "query", "item"


@dataclass(frozen=True)
class ExplainedPair:
    """A (query, item) pair as the scorer ranked it, split into word units."""

    query: str  # the fitted query text
    item: str  # the fitted item text
    query_words: Segmentation
    item_words: Segmentation
    query_cut: bool = False
    item_cut: bool = False

    @property
    def words(self) -> list[str]:
        return self.query_words.words + self.item_words.words

    @property
    def sides(self) -> list[str]:
        return [QUERY] * len(self.query_words.words) + [ITEM] * len(self.item_words.words)

    @property
    def n_query(self) -> int:
        return len(self.query_words.words)

    @property
    def n_words(self) -> int:
        return len(self.query_words.words) + len(self.item_words.words)

    def texts(self, present: np.ndarray, removal: Removal, mask_token: str) -> tuple[str, str]:
        """The query and item with the words whose entry is 0 removed."""
        present = np.asarray(present) > 0.5
        q = compose(self.query, self.query_words.word_spans, present[: self.n_query], removal, mask_token)
        d = compose(self.item, self.item_words.word_spans, present[self.n_query:], removal, mask_token)
        return q, d


def explained_pair(scorer, query: str, item: str) -> ExplainedPair:
    """The pair exactly as `scorer` ranks it, segmented with the scorer's own tokenizer."""
    fitted = scorer.fit(query, item)
    tokenizer = getattr(scorer, "tokenizer", None)
    return ExplainedPair(fitted.query, fitted.item, segment(fitted.query, tokenizer), segment(fitted.item, tokenizer),
                         bool(fitted.query_cut), bool(fitted.item_cut))


@dataclass
class WordGame:
    """Word-presence matrix (n x M) -> n scores through the Scorer, every call batched.

    Counts the rows it scored (`rows`: the model evaluations an explainer spent) and the calls;
    with `record`, keeps each call's texts (the perf benchmark replays them without the explainer).
    With `cache`, a row already scored is looked up instead (used for the metrics, never for an
    explainer's own cost).
    """

    scorer: object
    pair: ExplainedPair
    removal: Removal = "delete"
    mask_token: str = "_"
    record: bool = False
    cache: bool = False
    rows: int = 0
    calls: int = 0
    recorded: list = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def texts(self, Z: np.ndarray) -> tuple[list[str], list[str]]:
        pairs = [self.pair.texts(z, self.removal, self.mask_token) for z in np.atleast_2d(Z)]
        return [q for q, _ in pairs], [d for _, d in pairs]

    def score_texts(self, queries: list[str], items: list[str]) -> np.ndarray:
        self.calls += 1
        self.rows += len(queries)
        if self.record:
            self.recorded.append((list(queries), list(items)))
        return np.asarray(self.scorer.score(queries, items), dtype=np.float64)

    def __call__(self, Z) -> np.ndarray:
        Z = (np.atleast_2d(np.asarray(Z, dtype=np.float64)) > 0.5).astype(np.int8)
        if not self.cache:
            return self.score_texts(*self.texts(Z))
        keys = [z.tobytes() for z in Z]
        fresh = [k for k in dict.fromkeys(keys) if k not in self._memo]
        if fresh:
            rows = np.stack([np.frombuffer(k, dtype=np.int8) for k in fresh])
            self._memo.update(zip(fresh, self.score_texts(*self.texts(rows))))
        return np.array([self._memo[k] for k in keys], dtype=np.float64)
