"""Config slice of the reason stage (pydantic only, light to import)."""
from __future__ import annotations

from bench.config_base import StrictModel


class ReasonConfig(StrictModel):
    pass
