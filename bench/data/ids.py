"""Document and query ids as they appear in whitespace-separated TREC files."""
from __future__ import annotations

import re


def safe_id(raw) -> str:
    """Ids go into whitespace-separated TREC files: whitespace becomes '_'."""
    return re.sub(r"\s+", "_", str(raw).strip())
