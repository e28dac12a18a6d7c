"""R2R's training objectives as small named objects (like sentence-transformers' cross-encoder losses).

Each takes the student's scores of one query's list (the relevance neuron, a 1-d tensor) and the
teacher's ranks (1 = best) and returns a scalar; `Combined` adds them up with weights
(`r2r.loss_weights`):

- `uncertainty` (default; Kendall, Gal & Cipolla 2018): L = sum_i exp(-s_i) L_i + s_i with learnable s_i.
  The s_i term makes a vanishing weight costly: for a fixed L_i the optimum is exp(-s_i) = 1 / L_i, so
  every term keeps a weight (each weighted term tends to 1) whatever the losses' scales. s_i is kept in
  [-3, 3] (weights in [0.05, 20]): a term whose loss reaches 0 (a satisfied hinge) would otherwise drive
  its weight to infinity and the total to minus infinity.
- `fixed`: L = sum_i a_i L_i with `r2r.fixed_weights`.
- `softmax`: (a, b, c) = softmax(w), learnable - the earlier formulation, kept as an option only: its
  gradient moves all weight onto the smallest loss (the others go to ~0 within a few hundred steps;
  tests/test_r2r.py shows it).

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
    """a, b, c = softmax(w): non-negative weights that sum to 1, learned with the model (collapses: see above)."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)


class UncertaintyWeights(nn.Module):
    """Homoscedastic-uncertainty weights (Kendall et al. 2018): weight_i = exp(-s_i), plus s_i in the loss."""

    BOUND = 3.0

    def __init__(self, n: int = 3):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n))

    def forward(self) -> torch.Tensor:
        return torch.exp(-self.log_vars.clamp(-self.BOUND, self.BOUND))

    def regulariser(self) -> torch.Tensor:
        return self.log_vars.clamp(-self.BOUND, self.BOUND).sum()


class Combined(nn.Module):
    """L = sum of the variant's terms (pair, list, gen), weighted by `weighting` (see the module docstring)."""

    def __init__(self, terms: tuple[str, ...], margin: float = 1.0, temperature: float = 1.0,
                 weighting: str = "uncertainty", fixed: tuple[float, ...] | None = None):
        super().__init__()
        self.terms = terms
        self.pair, self.list = PairwiseHinge(margin), ListwiseKL(temperature)
        self.weighting = weighting if len(terms) > 1 else "fixed"
        self.weights = {"uncertainty": UncertaintyWeights, "softmax": LearnedWeights}.get(self.weighting)
        self.weights = self.weights(len(terms)) if self.weights is not None else None
        order = ("pair", "list", "gen")
        given = fixed or (1.0, 1.0, 1.0)
        self.register_buffer("fixed", torch.tensor([float(given[order.index(t)]) for t in terms]))

    def forward(self, scores: torch.Tensor, ranks: torch.Tensor, generation: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        values = {"pair": lambda: self.pair(scores, ranks), "list": lambda: self.list(scores, ranks),
                  "gen": lambda: generation if generation is not None else scores.sum() * 0.0}
        parts = [values[t]() for t in self.terms]
        w = self.weights() if self.weights is not None else self.fixed.to(scores.device)
        total = sum(wi * p for wi, p in zip(w, parts))
        if isinstance(self.weights, UncertaintyWeights):
            total = total + self.weights.regulariser()
        logs = {f"loss_{t}": float(p.detach()) for t, p in zip(self.terms, parts)}
        logs.update({f"weight_{t}": float(wi.detach()) for t, wi in zip(self.terms, w)})
        return total, logs
