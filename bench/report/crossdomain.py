"""Cross-domain matrices and the BEIR / BRIGHT table layouts, built from a `Leaderboard`.

A cross-domain matrix answers "trained on X, how good on Y?" for one (model family, method):
rows are the training collections (plus BM25 and the family's zero-shot system), columns the
test collections plus their average, cells one measure (nDCG@10), each marked when it differs
significantly from the baselines (BM25) on that column's queries. The diagonal is in-domain.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from bench.report.flags import all_marks

# BRIGHT's 12 domains in the order and with the short headers of the BRIGHT paper.
BRIGHT_DOMAINS = {
    "biology": "Bio.", "earth_science": "Earth.", "economics": "Econ.", "psychology": "Psy.",
    "robotics": "Rob.", "stackoverflow": "Stack.", "sustainable_living": "Sus.", "leetcode": "Leet.",
    "pony": "Pony", "aops": "AoPS", "theoremqa_questions": "TheoQ.", "theoremqa_theorems": "TheoT.",
}
BEIR_LOADERS = ("beir", "hf", "ir_datasets")


@dataclass
class MatrixRow:
    label: str  # "BM25", "zero-shot", or the training collection
    system: str
    cells: dict[str, float | None]  # test dataset -> score
    marks: dict[str, str] = field(default_factory=dict)
    average: float | None = None
    in_domain: str | None = None  # the column that is this row's own training collection


@dataclass
class Matrix:
    title: str
    family: str
    method: str
    measure: str
    columns: list[str]
    rows: list[MatrixRow]

    def to_dict(self) -> dict:
        return asdict(self)


def _score(board, system: str, dataset: str, measure: str) -> float | None:
    col = (dataset, measure)
    if col not in board.table.columns or system not in board.table.index:
        return None
    v = board.table.loc[system, col]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _average(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _row(board, label, system, columns, measure, mk, in_domain=None) -> MatrixRow:
    cells = {d: _score(board, system, d, measure) for d in columns}
    return MatrixRow(label, system, cells, {d: mk.get((system, d, measure), "") for d in columns},
                     _average(cells.values()), in_domain)


def datasets_of(board) -> list[str]:
    seen: list[str] = []
    for d, _ in board.table.columns:
        if d not in seen:
            seen.append(d)
    return seen


def cross_domain_matrices(board, measure: str = "nDCG@10") -> list[Matrix]:
    """One matrix per (family, method) of the trained systems; zero-shot systems are a row of their
    family's matrices (or a matrix of their own when the family has no trained system)."""
    columns = [d for d in datasets_of(board) if (d, measure) in board.table.columns]
    if len(columns) < 2:
        return []
    baselines = board.report.get("baselines") or ["BM25"]
    mk = all_marks(board)
    systems = [board.systems[s] for s in board.table.index if s in board.systems]
    trained = [s for s in systems if s.kind == "trained"]
    zero_shot = [s for s in systems if s.kind == "zero-shot"]
    groups: dict[tuple[str, str], list] = {}
    for s in trained:
        groups.setdefault((s.family or "?", s.method or "?"), []).append(s)
    for s in zero_shot:
        if not any(f == (s.family or "?") for f, _ in groups):
            groups.setdefault((s.family or "?", "zero-shot"), [])
    out = []
    for (family, method), members in groups.items():
        rows = [_row(board, b, b, columns, measure, mk) for b in baselines if b in board.table.index]
        zs = [s for s in zero_shot if (s.family or "?") == family]
        for s in zs:
            label = "zero-shot" if len(zs) == 1 else f"zero-shot ({s.name})"
            rows.append(_row(board, label, s.name, columns, measure, mk))
        by_train: dict[str, int] = {}
        for s in members:
            by_train[s.train_dataset] = by_train.get(s.train_dataset, 0) + 1
        for s in sorted(members, key=lambda s: (columns.index(s.train_dataset) if s.train_dataset in columns
                                                else len(columns), s.name)):
            label = s.train_dataset or "?"
            if by_train[s.train_dataset] > 1:
                label = f"{label} ({s.name})"
            rows.append(_row(board, label, s.name, columns, measure, mk,
                             s.train_dataset if s.train_dataset in columns else None))
        title = f"{family} {method}" if method != "zero-shot" else f"{family} (zero-shot only)"
        out.append(Matrix(title, family, method, measure, columns, rows))
    return out


def layout_tables(board, measure: str = "nDCG@10") -> list[Matrix]:
    """BEIR layout (BEIR datasets as columns + average) and BRIGHT layout (its 12 domains in paper
    order + average), each when at least one such dataset is present; rows are all systems."""
    loaders: dict = board.report.get("loaders", {})
    domains: dict = board.report.get("bright_domains", {})
    present = [d for d in datasets_of(board) if (d, measure) in board.table.columns]
    baselines = board.report.get("baselines") or ["BM25"]
    mk = all_marks(board)
    tables = []
    beir = [d for d in present if loaders.get(d) in BEIR_LOADERS]
    if beir:
        rows = [_row(board, s, s, beir, measure, mk) for s in board.table.index]
        tables.append(Matrix("BEIR layout", "", "", measure, beir, rows))
    bright = [d for d in present if loaders.get(d) == "bright"]
    if bright:
        order = list(BRIGHT_DOMAINS)
        bright.sort(key=lambda d: order.index(_bright_key(domains.get(d, d))) if _bright_key(domains.get(d, d))
                    in order else len(order))
        rows = [_row(board, s, s, bright, measure, mk) for s in board.table.index]
        tables.append(Matrix("BRIGHT layout", "", "", measure, bright, rows))
    return tables


def _bright_key(domain: str) -> str:
    return domain.replace("-", "_").lower()


def column_header(board, dataset: str) -> str:
    """BRIGHT columns carry the paper's short domain header."""
    domain = board.report.get("bright_domains", {}).get(dataset)
    return BRIGHT_DOMAINS.get(_bright_key(domain), dataset) if domain else dataset
