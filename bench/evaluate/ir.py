"""Ranking quality with ir-measures (pytrec_eval backend), per query and aggregated."""
from __future__ import annotations

from typing import Iterable

import ir_measures
import pandas as pd

from bench.data.collection import Qrels, Run
from bench.errors import InputError

PER_QUERY_COLUMNS = ["system", "dataset", "qid", "measure", "value"]


def parse_measures(names: Iterable[str], field: str = "evaluate.measures") -> list:
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, KeyError, AttributeError):
            raise InputError(f"{field}: unknown measure {name!r}; expected an ir-measures name such as "
                             f"nDCG@10, RR, AP, R@100, P(rel=2)@10") from None
    return measures


def per_query(run: Run, qrels: Qrels, measure_names: list[str], dataset: str, qids: Iterable[str] | None = None,
              system: str | None = None) -> pd.DataFrame:
    """One row per (query, measure). Queries the run did not answer count as 0, like `trec_eval -c`."""
    measures = parse_measures(measure_names)
    wanted = set(qids) if qids is not None else set(qrels)
    qrels = {q: d for q, d in qrels.items() if q in wanted and d}
    scores = {q: d for q, d in run.scores.items() if q in qrels}
    rows = [(system or run.name, dataset, m.query_id, str(m.measure), float(m.value))
            for m in ir_measures.iter_calc(measures, qrels, scores)]
    df = pd.DataFrame(rows, columns=PER_QUERY_COLUMNS)
    # Judged queries with no retrieved document: 0 for every measure (trec_eval -c semantics).
    missing = sorted(set(qrels) - set(scores))
    if missing:
        zeros = pd.DataFrame([(system or run.name, dataset, q, str(m), 0.0) for q in missing for m in measures],
                             columns=PER_QUERY_COLUMNS)
        df = pd.concat([df, zeros], ignore_index=True)
    return df.sort_values(["measure", "qid"], ignore_index=True)


def measure_order(names: list[str]):
    """Sort key for measure names (as ir-measures prints them) that keeps the config's order."""
    order = {str(ir_measures.parse_measure(n)): i for i, n in enumerate(names)}
    return lambda printed: (order.get(printed, len(order)), printed)


def aggregate(per_query_df: pd.DataFrame) -> pd.DataFrame:
    """Mean over queries: rows (system, dataset), columns measures."""
    return per_query_df.groupby(["system", "dataset", "measure"], sort=False)["value"].mean().unstack("measure")
