"""How a (query, item) pair is shown to a model, and how it is fitted into the model's length.

One place defines the relevance prompt and the one truncation rule that training, scoring,
KernelSHAP and serving share, so a trained cell is scored, and explained, on exactly the input
it was trained on.

The rule (`InputFitter`): the template (instruction, chat markup, the answer cue) is never cut,
so the relevance logit is always read at the answer position. When the whole input does not fit
in `max_length` (minus a few tokens kept free for the answer), the **item is cut first**, down to
half of the room the template leaves; only then is the **query** cut to what is left. Cuts fall
on token boundaries of the model's own tokenizer. Every fitted pair says whether its query or
item was cut, and the stages count those pairs.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

RELEVANCE_INSTRUCTION = "Is the document relevant to the query? Answer yes or no."
POSITIVE, NEGATIVE = "yes", "no"
# Tokens kept free after the prompt: the answer word and an end-of-turn token in training.
ANSWER_RESERVE = 8


def user_message(query: str, text: str) -> str:
    return f"Query: {query}\nDocument: {text}\n{RELEVANCE_INSTRUCTION}"


def prompt_style(tokenizer, style: str) -> str:
    """The style actually used: `chat` needs a chat template; without one the plain form is used (and its answer)."""
    return "chat" if style == "chat" and getattr(tokenizer, "chat_template", None) else "plain"


def relevance_prompt(tokenizer, query: str, text: str, style: str = "plain") -> str:
    """Prompt whose next token is the relevance answer."""
    if prompt_style(tokenizer, style) == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": user_message(query, text)}],
                                             add_generation_prompt=True, tokenize=False)
    return user_message(query, text) + "\nAnswer:"


# ---------------------------------------------------------------- token ids: one encoder for every path
_ADDS_BOS: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS token before plain text by default (Llama-3, Mistral do; SmolLM2,
    Qwen and GPT-2 style tokenizers do not)."""
    try:
        return _ADDS_BOS[tokenizer]
    except (KeyError, TypeError):
        pass
    bos = getattr(tokenizer, "bos_token_id", None)
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    default = tokenizer("a")["input_ids"]
    found = bos is not None and default[:1] == [bos] and plain[:1] != [bos]
    try:
        _ADDS_BOS[tokenizer] = found
    except TypeError:
        pass
    return found


def encode(tokenizer, text: str) -> dict[str, list[int]]:
    """The token ids a model reads for a rendered prompt: the text's own tokens (a chat template writes its
    special tokens itself), with the tokenizer's BOS in front when it adds one by default and the text does
    not start with it already; never an EOS. Every path that feeds a causal LM a prompt encodes it here -
    scoring, SHAP and serving (through `InputFitter`), every training method (trl trainers get these ids
    pre-tokenized instead of tokenizing the prompt string again with their own special-token rule), R2R
    and PPO's reward lookup - so training sees exactly the ids that are scored: no missing or double BOS."""
    ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if adds_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id] + ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids)}


def answer_text(tokenizer, relevant: bool, style: str = "plain") -> str:
    """The answer as the prompt's continuation: " yes" after the plain prompt's "Answer:"; after a chat
    template's generation prompt, whatever the template itself writes before the word (read off a rendered
    assistant turn: nothing for ChatML, a space for Mistral's `[/INST]`)."""
    word = POSITIVE if relevant else NEGATIVE
    if prompt_style(tokenizer, style) == "plain":
        return " " + word
    user = [{"role": "user", "content": "q"}]
    try:
        prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        turn = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": word}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render an assistant turn: the bare word
        return word
    rest = turn[len(prompt):] if turn.startswith(prompt) else ""
    return rest[: rest.index(word) + len(word)] if word in rest else word


def answer_token_ids(tokenizer, style: str = "plain") -> tuple[int, int]:
    """The scoring neuron's two rows: the first token the model reads after the prompt when the answer is
    "yes" / "no", taken from the encoding of prompt + answer (not of the answer alone, whose first token can
    differ: "yes" vs " yes"). Raises if the prompt's ids are not a prefix of prompt + answer's."""
    prompt = relevance_prompt(tokenizer, "q", "d", style)
    base = encode(tokenizer, prompt)["input_ids"]
    ids = []
    for relevant in (True, False):
        full = encode(tokenizer, prompt + answer_text(tokenizer, relevant, style))["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise ValueError(f"the tokenizer merges the answer {answer_text(tokenizer, relevant, style)!r} into the "
                             f"prompt's last token: the answer position is not a token boundary")
        ids.append(full[len(base)])
    if ids[0] == ids[1]:
        raise ValueError("tokenizer maps 'yes' and 'no' to the same first token")
    return ids[0], ids[1]


def answer_ids(tokenizer, relevant: bool, style: str = "plain") -> list[int]:
    """What training appends to a prompt: the answer's token, then EOS (as trl appended to completions)."""
    pos, neg = answer_token_ids(tokenizer, style)
    eos = getattr(tokenizer, "eos_token_id", None)
    return [pos if relevant else neg] + ([eos] if eos is not None else [])


@dataclass(frozen=True)
class FittedPair:
    """A (query, item) pair as the model reads it."""

    input: Any  # what the model is given: a prompt string, or a (query, item) pair for encoders
    query: str  # the query text inside it (cut or not)
    item: str  # the item text inside it
    query_cut: bool
    item_cut: bool
    # the tokenizer's encoding of `input` (input_ids, attention_mask[, token_type_ids]), reused to score
    encoding: Any = field(default=None, compare=False, repr=False)


def cut_to_tokens(tokenizer, text: str, n: int) -> tuple[str, bool]:
    """`text` cut to at most `n` tokens, on the tokenizer's own boundaries; (text, was_cut).

    The cut falls at the end of a token's characters; where several tokens share characters (byte
    pieces of one multi-byte character), the prefix can tokenise to more than `n`, so the cut
    moves back until it does not.
    """
    if n <= 0:
        return "", bool(text)

    def count(t: str) -> int:
        return len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])

    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        if len(offsets) <= n:
            return text, False
        target = n
        while target > 0:
            cut = text[: offsets[target - 1][1]]
            over = count(cut) - n
            if over <= 0:
                return cut, True
            target -= over
        return "", True
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) <= n:
        return text, False
    target = n
    while target > 0:
        cut = tokenizer.decode(ids[:target])
        over = count(cut) - n
        if over <= 0:
            return cut, True
        target -= over
    return "", True


class InputFitter:
    """Fits pairs into `max_length` tokens by the rule of this module (item first, then query).

    `render(query, item)` builds the model input and `encode(input)` tokenises it as the model
    reads it; the template's own size is measured once from an empty pair. A pair whose whole
    input fits is taken as it is (one tokenisation, reused for scoring).
    """

    def __init__(self, tokenizer, max_length: int, render: Callable[[str, str], Any], encode: Callable[[Any], Any],
                 reserve: int = 0):
        self.tokenizer, self.render, self.encode = tokenizer, render, encode
        self.limit = max_length - reserve
        self.template = self.length(render("", ""))
        self.room = self.limit - self.template
        if self.room < 8:
            from bench.errors import InputError

            raise InputError(f"max_length {max_length} leaves {self.room} tokens for query and item: the prompt "
                             f"template alone takes {self.template} (+{reserve} for the answer); raise max_length")
        self._last_query: tuple[str, list | None] | None = None

    def length(self, rendered) -> int:
        return len(self.encode(rendered)["input_ids"])

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _cut(self, text: str, n: int, offsets: list | None) -> tuple[str, bool]:
        """A first cut at `n` tokens from known offsets (the final length check corrects any overlap)."""
        if offsets is None:
            return cut_to_tokens(self.tokenizer, text, n)
        if len(offsets) <= n:
            return text, False
        return (text[: offsets[n - 1][1]] if n > 0 else ""), True

    def _offsets(self, text: str) -> list | None:
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                              verbose=False)["offset_mapping"]

    def fit(self, query: str, item: str) -> FittedPair:
        query, item = query or "", item or ""
        rendered = self.render(query, item)
        enc = self.encode(rendered)
        if len(enc["input_ids"]) <= self.limit:
            return FittedPair(rendered, query, item, False, False, enc)
        if self._last_query is None or self._last_query[0] != query:  # re-ranking: ~100 items per query
            self._last_query = (query, self._offsets(query))
        q_off, d_off = self._last_query[1], self._offsets(item)
        q_len = len(q_off) if q_off is not None else self._count(query)
        d_len = len(d_off) if d_off is not None else self._count(item)
        d_keep = max(self.room - q_len, min(d_len, self.room // 2))
        d_text, d_cut = self._cut(item, d_keep, d_off)
        q_text, q_cut = self._cut(query, self.room - d_keep, q_off)
        # Pieces tokenised apart can merge differently once joined: shrink until the whole fits.
        for _ in range(8):
            rendered = self.render(q_text, d_text)
            enc = self.encode(rendered)
            excess = len(enc["input_ids"]) - self.limit
            if excess <= 0:
                return FittedPair(rendered, q_text, d_text, q_cut, d_cut, enc)
            if d_text:
                d_text, _ = cut_to_tokens(self.tokenizer, d_text, max(0, self._count(d_text) - excess))
                d_cut = True
            else:
                q_text, _ = cut_to_tokens(self.tokenizer, q_text, max(0, self._count(q_text) - excess))
                q_cut = True
        raise RuntimeError(f"could not fit a pair into {self.limit} tokens")

    def fit_all(self, queries, items) -> list[FittedPair]:
        return [self.fit(q, d) for q, d in zip(queries, items)]


def relevance_fitter(tokenizer, max_length: int, style: str) -> InputFitter:
    """The relevance prompt (zero-shot, SFT, DPO, PPO, GRPO, RLOO): ends at the answer position."""
    return InputFitter(tokenizer, max_length, lambda q, d: relevance_prompt(tokenizer, q, d, style),
                       lambda s: encode(tokenizer, s), reserve=ANSWER_RESERVE)


def message_fitter(tokenizer, max_length: int) -> InputFitter:
    """The bare user message a reward head reads (reward modelling)."""
    return InputFitter(tokenizer, max_length, user_message, lambda s: encode(tokenizer, s))


def pair_fitter(tokenizer, max_length: int) -> InputFitter:
    """A cross-encoder's (query, item) pair with the tokenizer's own special tokens ([CLS] q [SEP] d [SEP])."""
    return InputFitter(tokenizer, max_length, lambda q, d: (q, d), lambda p: tokenizer(*p, verbose=False))


# ---------------------------------------------------------------------------------------------------------------
# Seq2seq point-wise scorers (monoT5, Nogueira et al. 2020; castorini/pygaggle's MonoT5): the encoder reads
# "Query: q Document: d Relevant:" (with the tokenizer's own special tokens, T5's closing </s>), the decoder
# starts from its start token, and the first decoder step's logits of "true" and "false" give the score.
SEQ2SEQ_TEMPLATE = "Query: {query} Document: {item} Relevant:"
SEQ2SEQ_POSITIVE, SEQ2SEQ_NEGATIVE = "true", "false"


def seq2seq_input(query: str, item: str) -> str:
    return SEQ2SEQ_TEMPLATE.format(query=query, item=item)


def seq2seq_answer_ids(tokenizer) -> tuple[int, int]:
    """First token of "true" and of "false" (T5's sentencepiece: "▁true", "▁false"): the two rows of the neuron."""
    pos = tokenizer(SEQ2SEQ_POSITIVE, add_special_tokens=False)["input_ids"][0]
    neg = tokenizer(SEQ2SEQ_NEGATIVE, add_special_tokens=False)["input_ids"][0]
    if pos == neg:
        raise ValueError("tokenizer maps 'true' and 'false' to the same first token")
    return pos, neg


def seq2seq_fitter(tokenizer, max_length: int) -> InputFitter:
    """The encoder input of a seq2seq scorer, fitted by this module's one rule (template and special tokens never
    cut; item first, then query). Nothing is reserved for the answer: it is read from the decoder."""
    return InputFitter(tokenizer, max_length, seq2seq_input, lambda s: tokenizer(s, verbose=False))
