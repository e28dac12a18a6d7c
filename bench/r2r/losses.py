"""R2R's training objectives as small named objects (like sentence-transformers' cross-encoder losses).

Each takes the student's scores of one query's list (the relevance neuron, a 1-d tensor) and the
teacher's ranks (1 = best) and returns a scalar; `Combined` adds the generation loss with
learnable weights a, b, c = softmax(w) (so a + b + c = 1).

- `PairwiseHinge`: mean over pairs (i, j) with rank_i < rank_j of max(0, m - (s_i - s_j)).
- `ListwiseKL`: KL(Q || P), P = softmax(s), Q = softmax(-(rank - 1) / tau): the teacher's ranking
  as a distribution that decays with rank (tau = 1 by default).
- generation: the causal-LM cross-entropy of the teacher's reason tokens (computed by the model).
"""
from __future__ import annotations

import torch
from torch import nn


class PairwiseHinge(nn.Module):
    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        above = ranks[:, None] < ranks[None, :]  # [i, j]: the teacher ranks i above j
        if not above.any():
            return scores.sum() * 0.0
        diff = scores[:, None] - scores[None, :]
        return torch.clamp(self.margin - diff, min=0.0)[above].mean()


class ListwiseKL(nn.Module):
    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def target(self, ranks: torch.Tensor) -> torch.Tensor:
        return torch.softmax(-(ranks.float() - 1.0) / self.temperature, dim=0)

    def forward(self, scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        q = self.target(ranks)
        log_p = torch.log_softmax(scores.float(), dim=0)
        return torch.sum(q * (torch.log(q) - log_p))


class LearnedWeights(nn.Module):
    """a, b, c = softmax(w): non-negative weights that sum to 1, learned with the model."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)


class Combined(nn.Module):
    """L = a L_pair + b L_list + c L_gen over the terms a variant uses (the others get no weight)."""

    def __init__(self, terms: tuple[str, ...], margin: float = 1.0, temperature: float = 1.0):
        super().__init__()
        self.terms = terms
        self.pair, self.list = PairwiseHinge(margin), ListwiseKL(temperature)
        self.weights = LearnedWeights(len(terms)) if len(terms) > 1 else None

    def forward(self, scores: torch.Tensor, ranks: torch.Tensor, generation: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        values = {"pair": lambda: self.pair(scores, ranks), "list": lambda: self.list(scores, ranks),
                  "gen": lambda: generation if generation is not None else scores.sum() * 0.0}
        parts = [values[t]() for t in self.terms]
        w = self.weights() if self.weights is not None else torch.ones(1, device=scores.device)
        total = sum(wi * p for wi, p in zip(w, parts))
        logs = {f"loss_{t}": float(p.detach()) for t, p in zip(self.terms, parts)}
        logs.update({f"weight_{t}": float(wi.detach()) for t, wi in zip(self.terms, w)})
        return total, logs
