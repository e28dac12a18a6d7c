"""A scorer whose exact Shapley and leave-one-out values are known in closed form.

`WordWeightScorer` is a real `Scorer` (a transformers-style scorer of this project: a fast
tokenizer with offsets, the reward-head fitting rule of `bench.rerank.prompts`, batched padded
forwards, a differentiable `neuron`), whose model is a word-weight table:

    score(pair) = bias + sum_w weight(w) * n_w + sum_(a, b) v_ab * n_a * n_b

with n_w the number of occurrences of word w in the query and the item together. The words of the
pair are the players; deleting a word (or masking it: the mask token is an unknown word of weight
0) removes its occurrence. Then, for an occurrence i of word w, exactly:

    Shapley(i)       = weight(w) + sum_(a, b) v_ab * ([w = a] n_b + [w = b] n_a) / 2
    leave-one-out(i) = weight(w) + sum_(a, b) v_ab * ([w = a] n_b + [w = b] n_a)

(an interaction term v * n_a * n_b is a sum of unanimity games over the pairs of occurrences,
whose dividend v is split evenly between the two). Integrated gradients from the pad-embedding
baseline is exact too: the model is linear in each embedding column, and along the straight path
the product of two sums of columns gives each factor half of the term.

Explainers are run on these cases by `reference_errors`, which reports each explainer's largest
absolute error against the exact values; the test suite holds the tolerances.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial
from typing import Callable, Mapping

import numpy as np

from bench.rerank import prompts
from bench.rerank.scorers import HFScorer

PAD, UNK = "[PAD]", "[UNK]"


@dataclass(frozen=True)
class WordWeights:
    """The scorer's table: a weight per word, a value per interacting pair of words, a bias."""

    weights: Mapping[str, float]
    interactions: Mapping[tuple[str, str], float] = field(default_factory=dict)
    bias: float = 0.0

    def vocabulary(self) -> list[str]:
        words = list(self.weights) + [w for pair in self.interactions for w in pair]
        return list(dict.fromkeys(words))


@dataclass(frozen=True)
class GroundTruthSpec:
    """The fields of `ScorerSpec` a scorer reads (name, batch size, length, precision)."""

    name: str = "ground-truth"
    kind: str = "ground-truth"
    model: str = "word-weights"
    batch_size: int = 64
    max_length: int = 512
    dtype: str = "float32"
    adapter: None = None
    prompt: str = "plain"


def _template_words() -> set[str]:
    return set(prompts.user_message("", "").split())


def word_level_tokenizer(vocabulary: list[str], max_length: int):
    """A fast (Rust `tokenizers`) tokenizer with one token per whitespace word: offsets, padding,
    and an unknown token for every word outside `vocabulary` (the template, the mask token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(vocabulary)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token=UNK, pad_token=PAD, model_max_length=max_length)
    tok.padding_side = "left"
    return tok


def word_weight_model(table: WordWeights, vocabulary: list[str]):
    """torch module: an embedding table (column 0: the word's weight; then, per interaction j,
    an indicator column for each of its two words) and the score above as its output neuron."""
    import torch

    class WordWeightModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            pairs = list(table.interactions.items())
            self.values = torch.nn.Parameter(torch.tensor([v for _, v in pairs], dtype=torch.float32),
                                             requires_grad=False)
            self.bias = float(table.bias)
            emb = torch.zeros(len(vocabulary) + 2, 1 + 2 * len(pairs))  # rows 0, 1: pad and unknown = 0
            for i, w in enumerate(vocabulary):
                emb[i + 2, 0] = float(table.weights.get(w, 0.0))
                for j, ((a, b), _) in enumerate(pairs):
                    emb[i + 2, 1 + 2 * j] = float(w == a)
                    emb[i + 2, 2 + 2 * j] = float(w == b)
            self.embed = torch.nn.Embedding.from_pretrained(emb, freeze=True)

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, attention_mask=None, **_):
            e = self.embed(input_ids)
            if attention_mask is not None:
                e = e * attention_mask[..., None].to(e.dtype)
            totals = e.sum(dim=1)  # per row: total weight, then the counts n_a, n_b of each pair
            score = totals[:, 0] + self.bias
            if len(self.values):
                score = score + (self.values * totals[:, 1::2] * totals[:, 2::2]).sum(dim=1)
            return score

    return WordWeightModel()


class WordWeightScorer(HFScorer):
    """The word-weight table as a Scorer: fit / score_fitted / score, and `neuron` for gradients."""

    def __init__(self, table: WordWeights, batch_size: int = 64, max_length: int = 512):
        vocabulary = table.vocabulary()
        clash = sorted(set(vocabulary) & _template_words())
        if clash:  # template words are always present: they would shift the closed forms
            raise ValueError(f"weighted words {clash} also occur in the prompt template")
        if any(a == b for a, b in table.interactions):
            raise ValueError("an interaction needs two different words")
        self.table = table
        spec = GroundTruthSpec(batch_size=batch_size, max_length=max_length)
        super().__init__(spec, model=word_weight_model(table, vocabulary),
                         tokenizer=word_level_tokenizer(vocabulary, max_length))

    def make_fitter(self) -> prompts.InputFitter:
        return prompts.message_fitter(self._tokenizer, self.spec.max_length)

    def neuron(self, batch):
        return self.model(**batch)

    def exact(self, query: str, item: str) -> dict[str, np.ndarray]:
        """Closed-form Shapley and leave-one-out values of every word of the fitted pair, the
        query's words first, then the item's (the order of `ExplainedPair.words`)."""
        fitted = self.fit(query, item)
        words = fitted.query.split() + fitted.item.split()
        counts = {w: words.count(w) for w in set(words)}
        shapley, loo = [], []
        for w in words:
            base = float(self.table.weights.get(w, 0.0))
            partner_total = sum(v * ((w == a) * counts.get(b, 0) + (w == b) * counts.get(a, 0))
                                for (a, b), v in self.table.interactions.items())
            shapley.append(base + partner_total / 2)
            loo.append(base + partner_total)
        return {"shapley": np.array(shapley), "loo": np.array(loo)}


def exact_shapley(value: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """Shapley values by enumeration of all 2^n coalitions (one batched call), for small n:
    phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))."""
    masks = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)
    v = np.asarray(value(masks), float)
    phi = np.zeros(n)
    for s in range(2 ** n):
        size = bin(s).count("1")
        for i in range(n):
            if not s >> i & 1:
                weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                phi[i] += weight * (v[s | 1 << i] - v[s])
    return phi


# ------------------------------------------------------------------------------ reference cases
QUERY = "ozone trend"
ITEM = "surface ozone record at alpine station shows trend"
ADDITIVE = WordWeights({"ozone": 1.5, "trend": -0.5, "surface": 0.75, "record": -1.0, "alpine": 2.0,
                        "station": 0.25, "shows": -0.25}, bias=-1.0)
INTERACTION = WordWeights({"ozone": 0.5, "alpine": 1.0, "station": -0.5, "record": 0.25},
                          interactions={("alpine", "station"): 2.0}, bias=0.5)
CASES = {"additive": ADDITIVE, "interaction": INTERACTION}


def reference_errors(specs, settings, seed: int = 0) -> dict:
    """Each explainer's largest absolute error on the two reference cases (additive; one pairwise
    interaction) against the exact values: Shapley values for every explainer but `loo`, whose
    target is the exact leave-one-out drop, and `random`, which has no target (its error is the
    floor a useful explainer must beat)."""
    from bench.explain.explainers import explain_pair

    out: dict = {}
    for case, table in CASES.items():
        scorer = WordWeightScorer(table)
        exact = scorer.exact(QUERY, ITEM)
        res = explain_pair(scorer, QUERY, ITEM, specs, settings, seed)
        for name, r in res["explainers"].items():
            target = exact["loo"] if name == "loo" else exact["shapley"]
            err = float(np.max(np.abs(np.asarray(r["values"]) - target))) if r["status"] == "ok" else None
            out.setdefault(name, {})[case] = {"max_abs_error": err, "target": "loo" if name == "loo" else "shapley",
                                              "evaluations": r["evaluations"], "status": r["status"]}
    return out
