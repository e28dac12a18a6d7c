"""Tokens and words of an item, and the text of an item with some of them removed.

Tokens are the scorer's tokenizer pieces of the item text; words are whitespace-separated spans
that group those pieces back together, so that a word split as "at-mosp-heric" is shown (and,
with unit=word, attributed) as "atmospheric". Each unit keeps its character span in the text so
that a coalition (a 0/1 vector over units) can be turned back into text exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WS = re.compile(r"\S+")
_SPACES = re.compile(r"[ \t]+")


@dataclass
class Segmentation:
    text: str  # the explained text (the item, cut to the scorer's budget)
    tokens: list[str]  # surface text of each non-blank tokenizer piece
    token_spans: list[tuple[int, int]]
    token_word: list[int]  # index of the word each token belongs to
    words: list[str]
    word_spans: list[tuple[int, int]]
    truncated: bool = False

    def units(self, unit: str) -> tuple[list[str], list[tuple[int, int]]]:
        return (self.words, self.word_spans) if unit == "word" else (self.tokens, self.token_spans)


def segment(text: str, tokenizer=None) -> Segmentation:
    """Split `text` into tokenizer pieces and whitespace words (pieces merged into words).

    The text is taken as it is: cutting an item to a model's length is the scorer's job
    (`Scorer.fit`), so that the explained text is the ranked text.
    """
    text = text or ""
    truncated = False
    if tokenizer is not None and getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
    else:  # no offsets available: every whitespace word is one token
        offsets = [m.span() for m in _WS.finditer(text)]
    word_spans = [m.span() for m in _WS.finditer(text)]
    words = [text[s:e] for s, e in word_spans]
    starts = np.array([s for s, _ in word_spans], dtype=np.int64)
    tokens, token_spans, token_word = [], [], []
    for s, e in offsets:
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        s += lead  # byte-level BPE pieces carry their leading space; the unit is the visible part
        if s >= e or not text[s:e].strip():
            continue  # a whitespace-only piece belongs to no word and is never removed
        # overlapping pieces (byte fallback splits one character over several ids) are merged
        if token_spans and s < token_spans[-1][1]:
            ps, pe = token_spans[-1]
            token_spans[-1] = (ps, max(pe, e))
            tokens[-1] = text[ps:max(pe, e)]
            continue
        tokens.append(text[s:e])
        token_spans.append((s, e))
        token_word.append(int(np.searchsorted(starts, s, side="right") - 1))
    return Segmentation(text, tokens, token_spans, token_word, words, word_spans, truncated)


def compose(text: str, spans: list[tuple[int, int]], present: np.ndarray, removal: str = "delete",
            mask_token: str = "_") -> str:
    """The text with the units whose `present` entry is 0 deleted (or replaced by `mask_token`).

    Whitespace between units is kept (runs of spaces left by deletions are collapsed), so a
    coalition with every unit present reproduces the text.
    """
    out: list[str] = []
    prev_end = 0
    for (s, e), keep in zip(spans, present):
        out.append(text[prev_end:s])
        if keep:
            out.append(text[s:e])
        elif removal == "mask":
            out.append(mask_token)
        prev_end = e
    out.append(text[prev_end:])
    joined = "".join(out)
    return joined if bool(np.all(present)) else _SPACES.sub(" ", joined).strip()


def word_values_from_tokens(token_values: np.ndarray, token_word: list[int], n_words: int) -> np.ndarray:
    """A word's attribution is the sum of its pieces' (Shapley values are additive over groups)."""
    out = np.zeros(n_words, dtype=np.float64)
    np.add.at(out, np.asarray(token_word, dtype=np.int64), token_values)
    return out
