"""Config slice of the report stage: significance, exports, site (pydantic only)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from bench.config_base import StrictModel

EXPORT_FORMATS = ("md", "csv", "json", "latex")


class ExpectedScore(StrictModel):
    """One condition of a score regression (`rerank-bench verify`), like a Pyserini two-click check."""

    dataset: str = Field(description="data source name")
    system: str = Field(description="system name in the leaderboard, e.g. BM25")
    measure: str = Field(description="ir-measures name, e.g. nDCG@10")
    expected: float = Field(description="the score this code is expected to reproduce")
    tolerance: float = Field(0.005, ge=0, description="|got - expected| allowed before FAIL")
    published: Optional[float] = Field(None, description="the published number, shown for reference")
    source: str = Field("", description="where the published number comes from")


class ReportConfig(StrictModel):
    baselines: list[str] = Field(
        default_factory=list,
        description="systems every other is tested against (default: [evaluate.baseline]); several allowed")
    test: Literal["t-test", "wilcoxon"] = Field("t-test", description="paired test over per-query scores")
    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="multiple-comparison correction over the systems compared with one baseline "
                            "on one (dataset, measure)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level after correction")
    ci_measure: str = Field("nDCG@10", description="measure given paired Cohen's d and a bootstrap CI")
    bootstrap_resamples: int = Field(1000, ge=0, description="bootstrap resamples for the CI (0: no CI)")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the bootstrap CI")
    exports: list[Literal["md", "csv", "json", "latex"]] = Field(
        default_factory=lambda: list(EXPORT_FORMATS), description="leaderboard formats written")
    matrix_measure: str = Field("nDCG@10", description="measure of the cross-domain matrix and BEIR/BRIGHT tables")
    repaired_threshold: float = Field(
        0.2, ge=0, le=1, description="a listwise system whose share of identifiers placed by the repair rule (not "
                                     "ranked by the model) exceeds this is flagged '⚠' in every table")
    expected: list[ExpectedScore] = Field(default_factory=list, description="score regression conditions")
    expected_file: Optional[Path] = Field(
        None, description="YAML with `conditions:` (a list like `expected`); default "
                          "<config dir>/expected/<config name>.yaml when it exists")
