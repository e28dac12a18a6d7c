"""Score regression: check a leaderboard against expected scores, like Pyserini's two-click reproductions.

A condition is (dataset, system, measure, expected, tolerance[, published, source]). Verdicts:

    OK                |got - expected| < 0.00005 (equal to the 4 digits a paper prints)
    within tolerance  |got - expected| <= tolerance
    FAIL              farther, or the score is missing

Conditions come from the config (`report.expected`), a file it names (`report.expected_file`), the
`--expected` option, or by convention `<config dir>/expected/<config name>.yaml`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from bench.config import read_yaml_mapping
from bench.errors import InputError
from bench.report.config import ExpectedScore

EXACT = 0.00005


@dataclass
class Verdict:
    condition: ExpectedScore
    got: float | None
    status: str  # OK | within tolerance | FAIL

    def line(self) -> str:
        c = self.condition
        got = "missing" if self.got is None else f"{self.got:.4f}"
        diff = "" if self.got is None else f", diff {self.got - c.expected:+.4f}"
        pub = ""
        if c.published is not None and self.got is not None:
            pub = f"; published {c.published:.4f}{' (' + c.source + ')' if c.source else ''}, " \
                  f"diff {self.got - c.published:+.4f}"
        return (f"{self.status:<16} {c.dataset} {c.system} {c.measure}: {got} "
                f"(expected {c.expected:.4f} ± {c.tolerance:g}{diff}{pub})")


def read_expected_file(path: Path) -> list[ExpectedScore]:
    path = Path(path)
    tree = read_yaml_mapping(path, "expected scores file")
    if not isinstance(tree.get("conditions"), list) or not tree["conditions"]:
        raise InputError("expected a mapping with a non-empty `conditions:` list", source=path)
    try:
        return TypeAdapter(list[ExpectedScore]).validate_python(tree["conditions"])
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(f"conditions.{loc}: {msg}", source=path) from None


def load_conditions(exp, config_path, override: str | None = None) -> tuple[list[ExpectedScore], str]:
    """The conditions to verify and where they came from; checked against the experiment up front."""
    config_path = Path(config_path)
    if override:
        conditions, source = read_expected_file(Path(override)), str(override)
    elif exp.report.expected:
        conditions, source = list(exp.report.expected), f"{config_path} (report.expected)"
    elif exp.report.expected_file:
        path = Path(exp.report.expected_file)
        if not path.is_absolute() and not path.is_file() and (config_path.parent / path).is_file():
            path = config_path.parent / path  # relative to the config file
        conditions, source = read_expected_file(path), str(path)
    else:
        path = config_path.parent / "expected" / f"{config_path.stem}.yaml"
        if not path.is_file():
            raise InputError(f"{config_path}: no expected scores: set report.expected or report.expected_file, "
                             f"pass --expected, or add {path}")
        conditions, source = read_expected_file(path), str(path)
    _check_against(exp, conditions, source)
    return conditions, source


def _check_against(exp, conditions: list[ExpectedScore], source: str) -> None:
    import ir_measures

    datasets = [s.name for s in exp.data]
    measures = {str(ir_measures.parse_measure(m)): m for m in exp.evaluate.measures}
    systems = sorted({"BM25", exp.retrieve.display_name}) + [s.name for s in exp.rerank.systems]
    for i, c in enumerate(conditions):
        where = f"{source}: conditions.{i}"
        if c.dataset not in datasets:
            raise InputError(f"{where}.dataset: {c.dataset!r} is not a data source of the config; expected one of {datasets}")
        try:
            name = str(ir_measures.parse_measure(c.measure))
        except Exception:  # ir_measures raises several types for a bad name
            raise InputError(f"{where}.measure: unknown measure {c.measure!r}") from None
        if name not in measures:
            raise InputError(f"{where}.measure: {c.measure!r} is not in evaluate.measures {list(measures.values())}")
        if exp.train is None and c.system not in systems:
            raise InputError(f"{where}.system: no system named {c.system!r}; expected one of {systems}")


def check(board, conditions: list[ExpectedScore]) -> list[Verdict]:
    import ir_measures

    out = []
    for c in conditions:
        measure = str(ir_measures.parse_measure(c.measure))
        col = (c.dataset, measure)
        got = None
        if col in board.table.columns and c.system in board.table.index:
            v = board.table.loc[c.system, col]
            got = None if v is None or math.isnan(v) else float(v)
        if got is None:
            status = "FAIL"
        elif abs(got - c.expected) < EXACT:
            status = "OK"
        elif abs(got - c.expected) <= c.tolerance + 1e-12:
            status = "within tolerance"
        else:
            status = "FAIL"
        out.append(Verdict(c, got, status))
    return out
