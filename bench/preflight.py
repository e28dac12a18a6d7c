"""Checks of a whole experiment before any stage runs: everything a later stage would trip on, cheaply."""
from __future__ import annotations

from pathlib import Path

from bench.config import FIRST_STAGE_NAME
from bench.errors import InputError


def preflight(p) -> None:
    """Cheap checks of everything a later stage would trip on, before any stage runs."""
    from bench.errors import require_file, require_writable_dir
    from bench.evaluate.ir import parse_measures
    from bench.models import check_model
    from bench.report.stage import check_report

    require_writable_dir(p.exp.results_dir, "results_dir")
    parse_measures(p.exp.evaluate.measures)
    check_report(p)
    names = [s.name for s in p.exp.data]
    for i, spec in enumerate(p.exp.rerank.scorers):
        check_model(spec.model)
        if spec.adapter is not None and not (Path(spec.adapter) / "adapter_config.json").is_file():
            raise InputError(f"rerank.systems ({spec.name}).adapter: {spec.adapter} is not a peft adapter folder "
                             f"(no adapter_config.json)")
        unknown = [d for d in spec.datasets or [] if d not in names]
        if unknown:
            raise InputError(f"rerank.systems ({spec.name}).datasets: unknown data source {unknown[0]!r}; "
                             f"expected one of {', '.join(names)}")
    for i, rs in enumerate(p.exp.rerank.run_systems):
        require_file(rs.run, "run file", f"rerank.systems.{i}.run")
        if rs.dataset is not None and rs.dataset not in names:
            raise InputError(f"rerank.systems.{i}.dataset: unknown data source {rs.dataset!r}; "
                             f"expected one of {', '.join(names)}")
        if rs.dataset is None and len(names) > 1:
            raise InputError(f"rerank.systems.{i}.dataset: the experiment has several data sources; "
                             f"name the one run {rs.name!r} ranks")
    if p.exp.train is not None:
        from bench.train.grid import preflight as check_train

        check_train(p)
        if any(m.startswith("r2r-") for m in p.exp.train.methods):
            import ir_measures

            have = {str(ir_measures.parse_measure(m)) for m in p.exp.evaluate.measures}
            if not {"nDCG@5", "nDCG@10"} <= have:
                raise InputError("evaluate.measures: the R2R tables report nDCG@5 and nDCG@10; add both")
    check_system_names(p)
    check_held_out(p)
    if p.exp.explain is not None or p.exp.reason is not None:
        from bench.explain.steps import preflight as check_explain

        check_explain(p.exp)


def check_held_out(p) -> None:
    """A trained system is evaluated on held-out queries only: `evaluate.split` all or train would score it
    on queries it trained on, unless the config says so explicitly (then those scores are flagged)."""
    ev = p.exp.evaluate
    trains = p.exp.train is not None or (p.exp.tune is not None and p.exp.tune.space is not None)
    if trains and ev.split in ("all", "train") and not ev.allow_training_queries:
        raise InputError(f"evaluate.split: {ev.split!r} includes the training queries of the trained systems; "
                         f"evaluate on held-out queries (split: test, or valid) or set "
                         f"evaluate.allow_training_queries: true to score them there, flagged in every table")


def check_system_names(p) -> None:
    """Every row of a leaderboard is one system: names may not repeat, nor take the first stage's."""
    from collections import Counter

    names = [s.name for s in p.exp.rerank.systems]
    if p.exp.train is not None:
        from bench.train.grid import planned_cell_names

        names += planned_cell_names(p.exp)
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise InputError(f"system names must be unique: {', '.join(repeated)} is used by two systems "
                         f"(rerank.systems and trained cells named <model label>-<method>)")
    first = {FIRST_STAGE_NAME, p.exp.retrieve.display_name}
    taken = sorted(first & set(names))
    if taken:
        raise InputError(f"system name {taken[0]!r} is the first stage's name; give the system another name")


