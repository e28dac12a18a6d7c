"""Report stage: significance against the baselines, attached to the leaderboard before export."""
from __future__ import annotations

import logging

import pandas as pd

from bench.errors import InputError

log = logging.getLogger("bench")


def baselines_of(exp) -> list[str]:
    return list(exp.report.baselines) or [exp.evaluate.baseline or exp.retrieve.display_name]


def add_significance(board, per_query: pd.DataFrame, exp) -> None:
    """Paired tests of every system against the baselines; fills `board.significance` and `board.report`."""
    from bench.evaluate.significance import compare, system_intervals

    cfg = exp.report
    baselines = baselines_of(exp)
    present = set(per_query["system"])
    for b in [b for b in baselines if b not in present and b in board.systems]:
        # a baseline that is a failed training cell: its row says why; the others are still compared
        log.warning("report: baseline %s has no results (%s); not compared against", b,
                    board.systems[b].error or board.systems[b].status)
        baselines.remove(b)
    board.significance = compare(per_query, baselines, test=cfg.test, correction=cfg.correction, alpha=cfg.alpha,
                                 ci_measure=cfg.ci_measure, seed=exp.seed, n_resamples=cfg.bootstrap_resamples,
                                 confidence=cfg.confidence)
    board.intervals = system_intervals(per_query, cfg.ci_measure, exp.seed, cfg.bootstrap_resamples, cfg.confidence)
    board.report.update({
        "baselines": baselines, "test": cfg.test, "correction": cfg.correction, "alpha": cfg.alpha,
        "ci_measure": cfg.ci_measure, "confidence": cfg.confidence, "matrix_measure": cfg.matrix_measure,
        "exports": list(cfg.exports),
        "loaders": {s.name: s.loader for s in exp.data},
        "bright_domains": {s.name: s.domain for s in exp.data if s.loader == "bright"},
    })


def check_report(pipeline) -> None:
    """Preflight: report measures parse, and the baselines are systems this experiment produces."""
    from bench.evaluate.ir import parse_measures

    exp = pipeline.exp
    parse_measures([exp.report.ci_measure], "report.ci_measure")
    parse_measures([exp.report.matrix_measure], "report.matrix_measure")
    if exp.train is not None:  # trained systems are named by the train stage; checked when they exist
        return
    known = sorted({"BM25", exp.retrieve.display_name}) + [s.name for s in exp.rerank.systems]
    for b in baselines_of(exp):
        if b not in known:
            field = "report.baselines" if exp.report.baselines else "evaluate.baseline"
            raise InputError(f"{field}: no system named {b!r}; expected one of {known}")
