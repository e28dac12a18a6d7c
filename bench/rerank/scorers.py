"""Scorers: one batched call from (query, item) pairs to one number per pair.

Every re-ranker - zero-shot LLM, trained grid cell, baseline - is a `Scorer`. Re-ranking,
KernelSHAP, serving and evaluation depend only on this interface.

The paper keeps a single output neuron per model. Here:
- `relevance-token` (zero-shot, SFT, DPO, PPO, GRPO, RLOO): the neuron is the difference of the
  LM head's rows for the first token of "yes" and of "no" at the answer position, i.e. the
  log-odds of "yes" over "no". Only the last position's logits are computed (`logits_to_keep=1`).
- `reward-head` (reward modelling): the scalar head of a sequence-classification model.
"""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np

from bench.config import ScorerSpec
from bench.rerank import prompts


class Scorer(abc.ABC):
    name: str

    @abc.abstractmethod
    def score(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """One float per (query, text) pair, higher = more relevant."""


def _load_tokenizer(model_dir: str, max_length: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.model_max_length = max_length
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # the answer position is the last one for every row
    return tok


def _apply_adapter(model, adapter: str | None):
    if not adapter:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


class _HFScorer(Scorer):
    """Shared batching: sort by length (less padding), score in batches, restore order."""

    def __init__(self, spec: ScorerSpec, model_dir: str):
        import torch

        self.spec, self.name, self.torch = spec, spec.name, torch
        self.tokenizer = _load_tokenizer(model_dir, spec.max_length)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # Reserve room for the prompt around the item; the item is truncated, never the instruction.
        self.item_budget = max(8, spec.max_length - 96)

    def texts_for(self, queries, texts) -> list[str]:
        raise NotImplementedError

    def forward(self, batch) -> "np.ndarray":
        raise NotImplementedError

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        if len(queries) != len(texts):
            raise ValueError("queries and texts differ in length")
        if not len(texts):
            return np.zeros(0, dtype=np.float32)
        prompts_ = self.texts_for(queries, texts)
        enc = self.tokenizer(prompts_, add_special_tokens=False, truncation=True, max_length=self.spec.max_length)
        order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
        out = np.empty(len(prompts_), dtype=np.float32)
        bs = self.spec.batch_size
        with self.torch.inference_mode():
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                batch = self.tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in idx],
                                            "attention_mask": [enc["attention_mask"][i] for i in idx]},
                                           return_tensors="pt").to(self.device)
                out[idx] = self.forward(batch)
        return out


class RelevanceTokenScorer(_HFScorer):
    def __init__(self, spec: ScorerSpec, model_dir: str):
        super().__init__(spec, model_dir)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.torch.float32)
        self.model = _apply_adapter(model, spec.adapter).to(self.device).eval()
        self.pos_id, self.neg_id = prompts.answer_token_ids(self.tokenizer, spec.prompt)

    def texts_for(self, queries, texts):
        return [prompts.relevance_prompt(self.tokenizer, q, prompts.truncate_item(self.tokenizer, t, self.item_budget),
                                         self.spec.prompt) for q, t in zip(queries, texts)]

    def forward(self, batch):
        logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
        return (logits[:, self.pos_id] - logits[:, self.neg_id]).float().cpu().numpy()


class RewardHeadScorer(_HFScorer):
    def __init__(self, spec: ScorerSpec, model_dir: str):
        super().__init__(spec, model_dir)
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=self.torch.float32)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = _apply_adapter(model, spec.adapter).to(self.device).eval()

    def texts_for(self, queries, texts):
        return [prompts.user_message(q, prompts.truncate_item(self.tokenizer, t, self.item_budget))
                for q, t in zip(queries, texts)]

    def forward(self, batch):
        return self.model(**batch).logits[:, 0].float().cpu().numpy()


SCORER_KINDS = {"relevance-token": RelevanceTokenScorer, "reward-head": RewardHeadScorer}


def build_scorer(spec: ScorerSpec) -> Scorer:
    from bench.models import resolve_model

    return SCORER_KINDS[spec.kind](spec, resolve_model(spec.model))
