"""Config slice of sweeps (pydantic only, light to import)."""
from __future__ import annotations

from bench.config_base import StrictModel


class TuneConfig(StrictModel):
    pass
