"""The base class of every config slice (kept apart so stage config modules import nothing heavy)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors; objects are immutable (and hashable into artifact keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (for "must be unique" config errors)."""
    from collections import Counter

    return sorted(n for n, count in Counter(names).items() if count > 1)
