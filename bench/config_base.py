"""The base class of every config slice (kept apart so stage config modules import nothing heavy)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors; objects are immutable (and hashable into artifact keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
