"""Config slice of the train stage (owned by the training grid; pydantic only, light to import)."""
from __future__ import annotations

from bench.config_base import StrictModel


class TrainConfig(StrictModel):
    pass
