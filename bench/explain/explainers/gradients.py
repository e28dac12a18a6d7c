"""Integrated gradients (Captum `LayerIntegratedGradients`) over the scorer's input embeddings.

What is attributed: the scorer's own neuron (`HFScorer.neuron`: the relevance log-odds, the
reward or the cross-encoder logit; never a probability, as Captum's maintainers advise, captum
issue 1178), on the pair exactly as ranked (the fitted prompt, tokenised as the scorer reads it).
Baseline: the pad token's embedding at every position that belongs to a query or item word; the
template tokens (instruction, chat markup, [CLS]/[SEP]) are kept, so only the words are attributed.
Token attributions (summed over the embedding dimension) are summed into words through the
tokenizer's character offsets; the convergence delta (sum of attributions minus
F(input) - F(baseline)) is recorded per item. IG is unstable on long Llama contexts (captum issue
1297): read the delta before trusting an item.

A bi-encoder embeds query and item apart and compares them by cosine: there is no single input
embedding layer whose tokens make the score, so it answers `unsupported`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.explain.explainers.base import Attribution, Explainer, Unsupported
from bench.explain.explainers.pair import ExplainedPair
from bench.rerank import prompts


@dataclass(frozen=True)
class TokenMap:
    """The pair's model input and, per token, the index of the word it belongs to (-1: template)."""

    encoding: dict  # input_ids, attention_mask[, token_type_ids]: lists of ints, one row
    token_word: np.ndarray
    token_text: list[str]  # each token's characters in the fitted input ("" for special tokens)
    straddling: int  # tokens that overlap more than one word (assigned to the first)


def _word_of_span(start: int, end: int, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """(first word overlapping [start, end) or -1, number of words it overlaps)."""
    hits = [w for w, (s, e) in enumerate(spans) if s < end and start < e]
    return (hits[0] if hits else -1), len(hits)


def _overlaps(start: int, end: int, at: int, length: int) -> bool:
    return start < at + length and at < end


def _string_regions(rendered: str, pair: ExplainedPair) -> tuple[int, int]:
    """Character offsets of the query and the item inside a rendered prompt (the user message of
    `bench.rerank.prompts`, inside whatever chat markup surrounds it)."""
    message = prompts.user_message(pair.query, pair.item)
    at = rendered.find(message)
    if at < 0:
        raise Unsupported("the scorer's prompt does not contain the pair's user message; cannot locate the words")
    query_at = at + prompts.user_message("\x00", "").index("\x00")
    item_at = at + prompts.user_message(pair.query, "\x00").index("\x00")
    return query_at, item_at


def token_map(scorer, pair: ExplainedPair) -> TokenMap:
    """Tokenise the fitted input with offsets and give every token its word of the pair."""
    fitted = scorer.fit(pair.query, pair.item)
    tok = scorer.tokenizer
    if not getattr(tok, "is_fast", False):
        raise Unsupported("integrated gradients needs a fast tokenizer (character offsets)")
    q_spans, d_spans = pair.query_words.word_spans, pair.item_words.word_spans
    if isinstance(fitted.input, tuple):  # cross-encoder: [CLS] query [SEP] item [SEP]
        enc = tok(*fitted.input, return_offsets_mapping=True, verbose=False)
        sides = enc.sequence_ids(0)
        shift = {0: (0, q_spans, 0), 1: (0, d_spans, pair.n_query)}
        texts = {0: pair.query, 1: pair.item}
        token_text = [texts[side][s:e] if side is not None else ""
                      for side, (s, e) in zip(sides, enc["offset_mapping"])]
    else:
        enc = tok(fitted.input, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        query_at, item_at = _string_regions(fitted.input, pair)
        sides = [0 if _overlaps(s, e, query_at, len(pair.query)) else 1 if _overlaps(s, e, item_at, len(pair.item))
                 else None for s, e in enc["offset_mapping"]]
        shift = {0: (query_at, q_spans, 0), 1: (item_at, d_spans, pair.n_query)}
        token_text = [fitted.input[s:e] for s, e in enc["offset_mapping"]]
    if fitted.encoding is not None and list(fitted.encoding["input_ids"]) != list(enc["input_ids"]):
        raise Unsupported("re-tokenising the fitted input with offsets gave other ids than the scorer's")
    token_word, straddling = [], 0
    for side, (s, e) in zip(sides, enc["offset_mapping"]):
        if side is None or e <= s:
            token_word.append(-1)
            continue
        origin, spans, first = shift[side]
        word, overlaps = _word_of_span(s - origin, e - origin, spans)
        straddling += overlaps > 1
        token_word.append(-1 if word < 0 else first + word)
    keys = list(fitted.encoding) if fitted.encoding is not None else list(tok.model_input_names)
    encoding = {k: list(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in keys and k in enc}
    return TokenMap(encoding, np.asarray(token_word, dtype=np.int64), token_text, straddling)


@contextlib.contextmanager
def _frozen(model):
    """No weight gradients while attributing: autograd then tracks only the embedding path."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class IntegratedGradientsParams:
    n_steps: int = 50  # Captum's default
    internal_batch_size: int = 16  # interpolation rows per forward + backward
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"] = \
        "gausslegendre"


class IntegratedGradients(Explainer):
    name = "integrated_gradients"
    library = "captum.attr.LayerIntegratedGradients"
    stochastic = False
    Params = IntegratedGradientsParams

    def explain(self, scorer, pair, game, params, settings, seed):
        import torch
        from captum.attr import LayerIntegratedGradients

        if not hasattr(scorer, "neuron") or not hasattr(getattr(scorer, "model", None), "get_input_embeddings"):
            raise Unsupported(f"{type(scorer).__name__} has no differentiable neuron over one input embedding layer "
                              "(a bi-encoder compares two separately embedded texts)")
        tokens = token_map(scorer, pair)
        device = next(scorer.model.parameters()).device
        batch = {k: torch.tensor([v], device=device) for k, v in tokens.encoding.items()}
        pad_id = scorer.tokenizer.pad_token_id
        attributed = torch.tensor(tokens.token_word >= 0, device=device)[None, :]
        baseline_ids = torch.where(attributed, torch.full_like(batch["input_ids"], pad_id), batch["input_ids"])
        extra_keys = [k for k in batch if k != "input_ids"]
        rows = {"forward": 0}

        def forward(input_ids, *extra):
            rows["forward"] += int(input_ids.shape[0])
            return scorer.neuron({"input_ids": input_ids, **dict(zip(extra_keys, extra))}).float()

        lig = LayerIntegratedGradients(forward, scorer.model.get_input_embeddings())
        with _frozen(scorer.model), torch.enable_grad():
            attr, delta = lig.attribute(batch["input_ids"], baselines=baseline_ids,
                                        additional_forward_args=tuple(batch[k] for k in extra_keys),
                                        n_steps=params.n_steps, internal_batch_size=params.internal_batch_size,
                                        method=params.method, return_convergence_delta=True)
        token_values = attr.sum(dim=-1)[0].detach().float().cpu().numpy().astype(np.float64)
        values = np.zeros(pair.n_words)
        mapped = tokens.token_word >= 0
        np.add.at(values, tokens.token_word[mapped], token_values[mapped])
        total = float(token_values.sum())
        delta = float(delta.reshape(-1)[0])
        return Attribution(values, {"convergence_delta": delta, "endpoint_difference": total - delta,
                                    "tokens": int(len(token_values)), "attributed_tokens": int(mapped.sum()),
                                    "straddling_tokens": tokens.straddling,
                                    "template_attribution": float(token_values[~mapped].sum())},
                           backward_rows=params.n_steps, forward_rows=rows["forward"])
