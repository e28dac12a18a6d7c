"""Scorers: one batched call from (query, item) pairs to one number per pair.

Every re-ranker - zero-shot LLM, trained grid cell, encoder, baseline - is a `Scorer`.
Re-ranking, KernelSHAP, serving and evaluation depend only on this interface:

- `fit(query, item)`: the pair as the model reads it (`bench.rerank.prompts`: the template is
  never cut; item first, then query);
- `score(queries, items)` / `score_pairs(...)`: one score per pair (and which pairs were cut).

Kinds (`SCORER_KINDS`, the `kind:` of a system):
- `relevance-token` (zero-shot, SFT, DPO, PPO, GRPO, RLOO): the neuron is the difference of the
  LM head's rows for the first token of "yes" and of "no" at the answer position, i.e. the
  log-odds of "yes" over "no". Only the last position's logits are computed (`logits_to_keep=1`).
- `reward-head` (reward modelling on causal LMs): the scalar head of a sequence-classification model.
- `cross-encoder`: an encoder (`AutoModelForSequenceClassification`, one label) over the
  tokenizer's (query, item) pair; also the reward head of the `cross-encoder` training family.
- `bi-encoder`: cosine of sentence-transformers embeddings of query and item (normalised).
- `seq2seq`: an encoder-decoder (monoT5-style): logit("true") - logit("false") at the first decoder step.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bench.model_loading import apply_adapter, device as _device, load_tokenizer, torch_dtype
from bench.registry import Registry, registry
from bench.rerank import prompts

if TYPE_CHECKING:  # a spec is any object with ScorerSpec's fields (the GPU check needs no pydantic)
    from bench.config import ScorerSpec


@dataclass
class ScoredPairs:
    scores: np.ndarray  # float32, one per pair
    query_cut: np.ndarray  # bool: the pair's query was cut to fit
    item_cut: np.ndarray  # bool: the pair's item was cut to fit


class Scorer(abc.ABC):
    name: str
    spec: ScorerSpec

    @abc.abstractmethod
    def fit(self, query: str, item: str) -> prompts.FittedPair:
        """The pair as the model reads it."""

    @abc.abstractmethod
    def score_fitted(self, pairs: Sequence[prompts.FittedPair]) -> np.ndarray:
        """One float per fitted pair, higher = more relevant."""

    def score_pairs(self, queries: Sequence[str], items: Sequence[str]) -> ScoredPairs:
        if len(queries) != len(items):
            raise ValueError("queries and items differ in length")
        fitted = [self.fit(q, d) for q, d in zip(queries, items)]
        scores = self.score_fitted(fitted) if fitted else np.zeros(0, dtype=np.float32)
        return ScoredPairs(np.asarray(scores, dtype=np.float32), np.array([f.query_cut for f in fitted], dtype=bool),
                           np.array([f.item_cut for f in fitted], dtype=bool))

    def score(self, queries: Sequence[str], items: Sequence[str]) -> np.ndarray:
        return self.score_pairs(queries, items).scores

    @property
    def tokenizer(self):
        return None


class HFScorer(Scorer):
    """A transformers model: fitted pairs tokenised, sorted by length (less padding), batched."""

    padding_side = "left"

    def __init__(self, spec: ScorerSpec, model_dir: str | None = None, *, model=None, tokenizer=None):
        import torch

        self.spec, self.name, self.torch = spec, spec.name, torch
        self.device = _device()
        self.dtype = torch_dtype(spec.dtype, self.device)
        self._tokenizer = tokenizer or load_tokenizer(model_dir, spec.max_length, self.padding_side)
        self.fitter = self.make_fitter()
        self.model = (model if model is not None else self.load(model_dir)).to(self.device).eval()

    @property
    def tokenizer(self):
        return self._tokenizer

    def make_fitter(self) -> prompts.InputFitter:
        raise NotImplementedError

    def load(self, model_dir: str):
        raise NotImplementedError

    def encode(self, inputs: list) -> dict:
        encoded = [prompts.encode(self._tokenizer, text) for text in inputs]
        return {k: [e[k] for e in encoded] for k in ("input_ids", "attention_mask")}

    def neuron(self, batch):
        """The score of each row of a padded batch as a differentiable tensor (the model's one output
        neuron, before any sigmoid): what `forward` returns as numbers and what gradient explainers attribute."""
        raise NotImplementedError

    def forward(self, batch) -> np.ndarray:
        return self.neuron(batch).float().cpu().numpy()

    def fit(self, query: str, item: str) -> prompts.FittedPair:
        return self.fitter.fit(query, item)

    def score_fitted(self, pairs: Sequence[prompts.FittedPair]) -> np.ndarray:
        if all(p.encoding is not None for p in pairs):  # tokenised once, when fitted
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in pairs[0].encoding]
            enc = {k: [p.encoding[k] for p in pairs] for k in keys}
        else:
            enc = self.encode([p.input for p in pairs])
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        bs = self.spec.batch_size
        with self.torch.inference_mode():
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                batch = self._tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys},
                                            return_tensors="pt").to(self.device)
                out[idx] = self.forward(batch)
        return out


class RelevanceTokenScorer(HFScorer):
    def make_fitter(self):
        return prompts.relevance_fitter(self._tokenizer, self.spec.max_length, self.spec.prompt)

    def load(self, model_dir):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype)
        return apply_adapter(model, self.spec.adapter)

    def __init__(self, spec, model_dir=None, *, model=None, tokenizer=None):
        super().__init__(spec, model_dir, model=model, tokenizer=tokenizer)
        self.pos_id, self.neg_id = prompts.answer_token_ids(self._tokenizer, spec.prompt)

    def neuron(self, batch):
        logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.pos_id] - logits[:, self.neg_id]


class RewardHeadScorer(HFScorer):
    def make_fitter(self):
        return prompts.message_fitter(self._tokenizer, self.spec.max_length)

    def load(self, model_dir):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=self.dtype)
        model.config.pad_token_id = self._tokenizer.pad_token_id
        return apply_adapter(model, self.spec.adapter)

    def neuron(self, batch):
        return self.model(**batch).logits[:, 0]


class CrossEncoderScorer(HFScorer):
    """[CLS] query [SEP] item [SEP] -> one logit (ms-marco cross-encoders, or a trained MiniLM head)."""

    padding_side = "right"

    def make_fitter(self):
        return prompts.pair_fitter(self._tokenizer, self.spec.max_length)

    def load(self, model_dir):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=self.dtype)
        return apply_adapter(model, self.spec.adapter)

    def encode(self, inputs):
        return self._tokenizer([q for q, _ in inputs], [d for _, d in inputs])

    def neuron(self, batch):
        return self.model(**batch).logits[:, 0]


class BiEncoderScorer(Scorer):
    """Cosine of normalised sentence-transformers embeddings; queries embedded once per call."""

    def __init__(self, spec: ScorerSpec, model_dir: str | None = None, *, model=None, **_):
        from sentence_transformers import SentenceTransformer

        self.spec, self.name = spec, spec.name
        device = _device()
        self.model = model if model is not None else SentenceTransformer(model_dir, device=device)
        if spec.dtype != "float32" and device == "cuda":
            self.model = self.model.to(torch_dtype(spec.dtype, device))
        self.model.max_seq_length = min(spec.max_length, self.model.max_seq_length or spec.max_length)
        # [CLS] and [SEP] take two of the model's positions
        self.room = self.model.max_seq_length - 2

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def fit(self, query: str, item: str) -> prompts.FittedPair:
        q, q_cut = prompts.cut_to_tokens(self.model.tokenizer, query or "", self.room)
        d, d_cut = prompts.cut_to_tokens(self.model.tokenizer, item or "", self.room)
        return prompts.FittedPair((q, d), q, d, q_cut, d_cut)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.spec.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def score_fitted(self, pairs):
        queries = list(dict.fromkeys(p.query for p in pairs))
        q_emb = dict(zip(queries, self.embed(queries)))
        d_emb = self.embed([p.item for p in pairs])
        return np.einsum("ij,ij->i", np.stack([q_emb[p.query] for p in pairs]), d_emb).astype(np.float32)


class Seq2SeqScorer(HFScorer):
    """monoT5-style point-wise scorer of an encoder-decoder model (castorini's monoT5 convention): the encoder
    reads "Query: q Document: d Relevant:" fitted by the one rule (`prompts.seq2seq_fitter`), the decoder takes
    one step from its start token, and the score is logit("true") - logit("false") there - the log-odds of
    "true" over "false", a monotone transform of pygaggle's log P(true | {true, false}) (same ranking)."""

    padding_side = "right"

    def make_fitter(self):
        return prompts.seq2seq_fitter(self._tokenizer, self.spec.max_length)

    def load(self, model_dir):
        from transformers import AutoModelForSeq2SeqLM

        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=self.dtype)
        return apply_adapter(model, self.spec.adapter)

    def __init__(self, spec, model_dir=None, *, model=None, tokenizer=None):
        super().__init__(spec, model_dir, model=model, tokenizer=tokenizer)
        self.pos_id, self.neg_id = prompts.seq2seq_answer_ids(self._tokenizer)
        start = self.model.config.decoder_start_token_id
        self.start_id = start if start is not None else self._tokenizer.pad_token_id

    def encode(self, inputs):
        return self._tokenizer(inputs)  # with the tokenizer's special tokens, as the fitter measured them

    def neuron(self, batch):
        ids = batch["input_ids"]
        start = self.torch.full((ids.shape[0], 1), self.start_id, dtype=ids.dtype, device=ids.device)
        logits = self.model(input_ids=ids, attention_mask=batch["attention_mask"], decoder_input_ids=start).logits
        return logits[:, 0, self.pos_id] - logits[:, 0, self.neg_id]


# Scorer kind -> class (`ScorerSpec.kind`); another package adds a kind through an entry point of group
# `rerank_bench.scorers` naming a `Scorer` subclass, built as `cls(spec, model_dir)`.
SCORER_KINDS: Registry = registry("scorers")
for _kind, _cls in {"relevance-token": RelevanceTokenScorer, "reward-head": RewardHeadScorer,
                    "cross-encoder": CrossEncoderScorer, "bi-encoder": BiEncoderScorer,
                    "seq2seq": Seq2SeqScorer}.items():
    SCORER_KINDS.register(_kind, _cls, replace=True)


def build_scorer(spec: ScorerSpec) -> Scorer:
    from bench.models import resolve_model

    return SCORER_KINDS[spec.kind](spec, resolve_model(spec.model))
