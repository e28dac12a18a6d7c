"""How a (query, item) pair is shown to a model, and how it is fitted into the model's length.

One place defines the relevance prompt and the one truncation rule that training, scoring,
KernelSHAP and serving share, so a trained cell is scored, and explained, on exactly the input
it was trained on.

The rule (`InputFitter`): the template (instruction, chat markup, the answer cue) is never cut,
so the relevance logit is always read at the answer position. When query + item do not fit in
`max_length` minus the template (minus a few tokens kept free for the answer), the **item is cut
first**, down to half of the room; only then is the **query** cut to what is left. Cuts fall on
token boundaries of the model's own tokenizer. Every fitted pair says whether its query or item
was cut, and the stages count those pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

RELEVANCE_INSTRUCTION = "Is the document relevant to the query? Answer yes or no."
POSITIVE, NEGATIVE = "yes", "no"
# Tokens kept free after the prompt: the answer word and an end-of-turn token in training.
ANSWER_RESERVE = 8


def user_message(query: str, text: str) -> str:
    return f"Query: {query}\nDocument: {text}\n{RELEVANCE_INSTRUCTION}"


def relevance_prompt(tokenizer, query: str, text: str, style: str = "plain") -> str:
    """Prompt whose next token is the relevance answer."""
    if style == "chat" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user_message(query, text)}],
                                             add_generation_prompt=True, tokenize=False)
    return user_message(query, text) + "\nAnswer:"


def answer_text(relevant: bool, style: str = "plain") -> str:
    word = POSITIVE if relevant else NEGATIVE
    return word if style == "chat" else " " + word


def answer_token_ids(tokenizer, style: str = "plain") -> tuple[int, int]:
    """First token of the positive and negative answers: the two rows of the scoring neuron."""
    pos = tokenizer(answer_text(True, style), add_special_tokens=False)["input_ids"][0]
    neg = tokenizer(answer_text(False, style), add_special_tokens=False)["input_ids"][0]
    if pos == neg:
        raise ValueError("tokenizer maps 'yes' and 'no' to the same first token")
    return pos, neg


@dataclass(frozen=True)
class FittedPair:
    """A (query, item) pair as the model reads it."""

    input: Any  # what the model is given: a prompt string, or a (query, item) pair for encoders
    query: str  # the query text inside it (cut or not)
    item: str  # the item text inside it
    query_cut: bool
    item_cut: bool


def cut_to_tokens(tokenizer, text: str, n: int) -> tuple[str, bool]:
    """`text` cut after its first `n` tokens (on the tokenizer's own boundaries); (text, was_cut)."""
    if n <= 0:
        return "", bool(text)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= n:
            return text, False
        return text[: offsets[n - 1][1]], True
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) <= n:
        return text, False
    return tokenizer.decode(ids[:n]), True


class InputFitter:
    """Fits pairs into `max_length` tokens by the rule of this module (item first, then query).

    `render(query, item)` builds the model input and `length(input)` counts its tokens; the
    template's own size is measured once from an empty pair.
    """

    def __init__(self, tokenizer, max_length: int, render: Callable[[str, str], Any], length: Callable[[Any], int],
                 reserve: int = 0):
        self.tokenizer, self.render, self.length = tokenizer, render, length
        self.limit = max_length - reserve
        self.template = length(render("", ""))
        self.room = self.limit - self.template
        if self.room < 8:
            from bench.errors import InputError

            raise InputError(f"max_length {max_length} leaves {self.room} tokens for query and item: the prompt "
                             f"template alone takes {self.template} (+{reserve} for the answer); raise max_length")
        self._query_tokens: dict[str, int] = {}

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def fit(self, query: str, item: str) -> FittedPair:
        query, item = query or "", item or ""
        q_len = self._query_tokens.get(query)
        if q_len is None:
            q_len = self._query_tokens[query] = self._count(query)
            if len(self._query_tokens) > 4096:  # re-ranking sees each query with ~100 items; keep it small
                self._query_tokens.clear()
        d_len = self._count(item)
        q_text, d_text, q_cut, d_cut = query, item, False, False
        if q_len + d_len > self.room:
            d_keep = max(self.room - q_len, min(d_len, self.room // 2))
            d_text, d_cut = cut_to_tokens(self.tokenizer, item, d_keep)
            q_text, q_cut = cut_to_tokens(self.tokenizer, query, self.room - d_keep)
        rendered = self.render(q_text, d_text)
        # Pieces tokenised apart can merge differently once joined: shrink until the whole fits.
        for _ in range(8):
            excess = self.length(rendered) - self.limit
            if excess <= 0:
                return FittedPair(rendered, q_text, d_text, q_cut, d_cut)
            if d_text:
                d_text, _ = cut_to_tokens(self.tokenizer, d_text, max(0, self._count(d_text) - excess))
                d_cut = True
            else:
                q_text, _ = cut_to_tokens(self.tokenizer, q_text, max(0, self._count(q_text) - excess))
                q_cut = True
            rendered = self.render(q_text, d_text)
        raise RuntimeError(f"could not fit a pair into {self.limit} tokens")

    def fit_all(self, queries, items) -> list[FittedPair]:
        return [self.fit(q, d) for q, d in zip(queries, items)]


def relevance_fitter(tokenizer, max_length: int, style: str) -> InputFitter:
    """The relevance prompt (zero-shot, SFT, DPO, PPO, GRPO, RLOO): ends at the answer position."""
    return InputFitter(tokenizer, max_length, lambda q, d: relevance_prompt(tokenizer, q, d, style),
                       lambda s: len(tokenizer(s, add_special_tokens=False, verbose=False)["input_ids"]), reserve=ANSWER_RESERVE)


def message_fitter(tokenizer, max_length: int) -> InputFitter:
    """The bare user message a reward head reads (reward modelling)."""
    return InputFitter(tokenizer, max_length, user_message,
                       lambda s: len(tokenizer(s, add_special_tokens=False, verbose=False)["input_ids"]))


def pair_fitter(tokenizer, max_length: int) -> InputFitter:
    """A cross-encoder's (query, item) pair with the tokenizer's own special tokens ([CLS] q [SEP] d [SEP])."""
    return InputFitter(tokenizer, max_length, lambda q, d: (q, d), lambda p: len(tokenizer(*p, verbose=False)["input_ids"]))
