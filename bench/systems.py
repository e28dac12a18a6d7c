"""What the pipeline's stages pass around about systems: who a system is, and what it ranked.

Kept in the core (not in the report layer) because every stage - train, rerank, explain,
evaluate, report - speaks of systems.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.data.collection import Run


@dataclass
class SystemInfo:
    name: str
    kind: str = ""  # first-stage | zero-shot | trained | tuned | run | listwise
    params: str = ""  # model size label
    family: str = ""
    method: str = ""
    train_dataset: str = ""  # the collection a trained system learned from (cross-domain matrix)
    status: str = "ok"  # ok | failed
    error: str = ""


@dataclass
class SystemRun:
    """A ranking produced by one system on one dataset, with its artifact key."""

    info: SystemInfo
    dataset: str
    run: Run | None
    key: str
    # pairs scored and how many had their query / item cut to fit the model (bench.rerank.prompts)
    cuts: dict = field(default_factory=dict)
