"""The report stage's node: the stages before evaluation with their console lines, then the leaderboard (with
significance, flags, the R2R tables and the explanation columns) and its exports."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.artifacts import write_json_atomic
from bench.console import stage
from bench.provenance import stamp
from bench.report.leaderboard import Leaderboard
from bench.report.stage import baselines_of


def prepare(p) -> None:
    """The stages before evaluation, each with its console lines: data, first stage, training, re-ranking."""
    with stage("data", announce=False) as st:  # input is validated here: silent until it is good
        st["note"] = ", ".join(f"{d.name}: {len(d.collection.queries)} queries, {len(d.collection.corpus)} "
                               f"documents" for d in p.datasets())
        for d in p.datasets():
            p.run_file_systems(d.name)  # run files checked against the collections before any work
    with stage("retrieve", "first stage") as st:
        st["note"] = ", ".join(f"{d.name}: {p.first_stage(d.name).info.name}, "
                               f"{len(p.first_stage(d.name).run.scores)} queries" for d in p.datasets())
    p.train_results()
    p.rerank_all()
    for d in p.datasets():
        p.listwise_runs(d.name)


def leaderboard(p) -> Leaderboard:
    p.prepare()
    with stage("evaluate", "ir-measures per query") as st:
        per_query = pd.concat([p.evaluate(s.name) for s in p.exp.data], ignore_index=True)
        st["note"] = f"{per_query['system'].nunique()} systems, {per_query['qid'].nunique()} queries"
    systems = p.all_systems()
    prov = stamp(p.exp.hash(), p.exp.seed, {d.name: d.checksum for d in p.datasets()})
    board = Leaderboard.from_per_query(per_query, systems, prov, baseline=baselines_of(p.exp)[0],
                                       measures=p.exp.evaluate.measures)
    board.truncation = {}
    for (name, system), sr in p.rerank_all().items():
        board.truncation.setdefault(system, {})[name] = sr.cuts
    for d in p.datasets():
        for sr in p.listwise_runs(d.name):
            board.listwise.setdefault(sr.info.name, {})[d.name] = sr.cuts["listwise"]
    from bench.report.stage import add_significance

    add_significance(board, per_query, p.exp)  # paired tests vs the baselines, marked in every export
    board.flags = p.flags(board)
    if any(r.cell.method.startswith("r2r-") for r in p.train_results()):
        from bench.r2r.tables import write_r2r_tables

        write_r2r_tables(per_query, systems, p.train_results(), p.exp, p.out_dir, prov, board.flags)
        from bench.r2r.tables import write_r2r_cost

        taught = list(p.exp.train.datasets) or [p.exp.data[0].name]
        write_r2r_cost({d: p.teacher(d)["summary"] for d in taught}, p.exp, p.out_dir, prov)
    if any(lw.prompt == "reasoning" for lw in p.exp.rerank.listwise_systems):  # R2R Table 5
        from bench.r2r.tables import write_r2r_table5

        write_r2r_table5(per_query, systems, board.listwise, p.exp, p.out_dir, prov, board.flags)
    if p.exp.explain is not None:  # faithfulness, grounding, Table 2 text columns per system
        board.extra_columns.update(p.explanations())
        board.explain_intervals = getattr(p, "explain_intervals", {})  # faithfulness with intervals
    with stage("report", "leaderboard exports") as st:
        p.out_dir.mkdir(parents=True, exist_ok=True)
        per_query.to_csv(p.out_dir / "per_query.csv.tmp", index=False)
        Path(p.out_dir / "per_query.csv.tmp").replace(p.out_dir / "per_query.csv")
        paths = board.write(p.out_dir, f"Leaderboard: {p.exp.name}")
        write_json_atomic(p.out_dir / "config.resolved.json", {"config": p.exp.model_dump(mode="json"),
                                                                    "provenance": prov})
        st["note"] = str(paths["md"])
    return board


def flags(p, board) -> list:
    """Scores that are not what they seem, marked in every table (`bench.report.flags`)."""
    from bench.report.flags import repaired_flags, training_query_flags

    flags = repaired_flags(board.listwise, p.exp.report.repaired_threshold)
    if p.exp.evaluate.allow_training_queries:
        flags += training_query_flags(board.systems, [d.name for d in p.datasets()], p.exp.evaluate.split)
    return flags


