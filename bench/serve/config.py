"""Config slice of the serving app (pydantic only, light to import)."""
from __future__ import annotations

from bench.config_base import StrictModel


class ServeConfig(StrictModel):
    pass
