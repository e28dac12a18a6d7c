"""Config slice of the explain stage (pydantic only, light to import)."""
from __future__ import annotations

from bench.config_base import StrictModel


class ExplainConfig(StrictModel):
    pass
