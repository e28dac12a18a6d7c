"""Marks that say a score is not what it seems, on every table that shows it (leaderboard md/csv/json/tex,
cross-domain and layout matrices, the site, the console, the R2R tables), each explained in the legend.

- `⚠` repaired: a listwise LLM system whose answers left more than `report.repaired_threshold` of the
  identifiers it was asked to rank to the repair rule (missing ids appended in their previous order,
  failed windows kept as they were): its ranking is mostly the first stage's, not the model's.
- `✱` training queries: a trained (or tuned) system evaluated on queries it was trained on - allowed
  only when `evaluate.allow_training_queries: true` says so explicitly (otherwise the run refuses).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

REPAIRED = "⚠"
TRAINING_QUERIES = "✱"
LATEX = {REPAIRED: r"\triangle", TRAINING_QUERIES: r"\ast"}


@dataclass(frozen=True)
class Flag:
    system: str
    dataset: str
    symbol: str
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


def repaired_flags(listwise: dict, threshold: float) -> list[Flag]:
    """`listwise`: system -> dataset -> {totals: {ids, unranked, ...}} (the leaderboard's listwise counts)."""
    out = []
    for system, per_dataset in listwise.items():
        for dataset, counts in per_dataset.items():
            totals = counts.get("totals", {})
            ids, unranked = totals.get("ids") or 0, totals.get("unranked") or 0
            if ids and unranked / ids > threshold:
                out.append(Flag(system, dataset, REPAIRED,
                                f"{system} on {dataset}: {unranked} of {ids} identifiers ({unranked / ids:.0%}) were "
                                f"placed by the repair rule, not by the model (over report.repaired_threshold "
                                f"{threshold:g}): the ranking is mostly the first stage's"))
    return out


def training_query_flags(systems: dict, datasets: list[str], split: str) -> list[Flag]:
    """Trained / tuned systems scored on their own training collection with a split that holds its
    training queries (`all` or `train`)."""
    if split not in ("all", "train"):
        return []
    return [Flag(info.name, info.train_dataset, TRAINING_QUERIES,
                 f"{info.name} on {info.train_dataset}: evaluated on queries it was trained on (evaluate.split: {split}, "
                 f"evaluate.allow_training_queries: true)")
            for info in systems.values()
            if info.kind in ("trained", "tuned") and info.train_dataset in datasets]


def symbols(flags: list) -> dict[tuple[str, str], str]:
    """(system, dataset) -> the flags' symbols."""
    out: dict[tuple[str, str], str] = {}
    for f in flags:
        f = f if isinstance(f, Flag) else Flag(**f)
        out[(f.system, f.dataset)] = out.get((f.system, f.dataset), "") + f.symbol
    return out


def legend_lines(flags: list) -> list[str]:
    notes = []
    for f in flags:
        f = f if isinstance(f, Flag) else Flag(**f)
        notes.append(f"{f.symbol} {f.note}.")
    return list(dict.fromkeys(notes))


def all_marks(board) -> dict[tuple[str, str, str], str]:
    """(system, dataset, measure) -> significance superscripts, then the flags of (system, dataset)."""
    from bench.evaluate.significance import marks as significance_marks

    marks = dict(significance_marks(board.significance, board.report.get("baselines") or ["BM25"]))
    by_cell = symbols(getattr(board, "flags", []))
    if by_cell:
        for d, m in board.table.columns:
            for s in board.table.index:
                if (s, d) in by_cell:
                    marks[(s, d, m)] = marks.get((s, d, m), "") + by_cell[(s, d)]
    return marks
