"""Config slice of the report stage: significance, exports, site (pydantic only)."""
from __future__ import annotations

from bench.config_base import StrictModel


class ReportConfig(StrictModel):
    pass
