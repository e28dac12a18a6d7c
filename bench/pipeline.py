"""One pipeline, stage by stage, each stage a cached artifact keyed by what determines it.

    data -> retrieve -> (pairs -> train) -> rerank -> (explain -> reason) -> evaluate -> report

`Pipeline` memoises each stage's artifact in memory and on disk (`StageCache`), so
`rerank-bench evaluate` after `rerank-bench retrieve` recomputes nothing that is already
there, and an interrupted `run` resumes from its finished stages.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.artifacts import StageCache, content_hash, file_sha256, write_json_atomic
from bench.config import Experiment, ScorerSpec
from bench.data.collection import Collection, Run
from bench.provenance import stamp
from bench.report.leaderboard import Leaderboard, SystemInfo

log = logging.getLogger("bench")

# Bump a stage's version when its code changes what it produces: old artifacts are then ignored.
STAGE_VERSIONS = {"data": 1, "retrieve": 1, "rerank": 1, "evaluate": 1}


@dataclass
class Dataset:
    """A loaded collection with its splits and artifact key."""

    name: str
    collection: Collection
    splits: dict[str, list[str]]
    key: str
    checksum: str

    def qids(self, split: str) -> list[str]:
        return sorted(self.collection.queries) if split == "all" else self.splits.get(split, [])


@dataclass
class SystemRun:
    """A ranking produced by one system on one dataset, with its artifact key."""

    info: SystemInfo
    dataset: str
    run: Run | None
    key: str


class Pipeline:
    def __init__(self, exp: Experiment):
        self.exp = exp
        self.out_dir = exp.out_dir
        self.cache = StageCache(self.out_dir)

    def preflight(self) -> None:
        """Cheap checks of everything a later stage would trip on, before any stage runs."""
        from bench.evaluate.ir import parse_measures
        from bench.models import check_model
        from bench.report.stage import check_report

        parse_measures(self.exp.evaluate.measures)
        check_report(self)
        for spec in self.exp.rerank.systems:
            check_model(spec.model)
        if self.exp.train is not None:
            from bench.train.grid import preflight as check_train

            check_train(self)
        if self.exp.explain is not None or self.exp.reason is not None:
            from bench.explain.steps import preflight as check_explain

            check_explain(self)

    # ---------------------------------------------------------------- data
    @functools.cache
    def dataset(self, name: str) -> Dataset:
        from bench.data.loaders import load_source
        from bench.data.splits import split_queries

        src = self.exp.source(name)
        key = content_hash("data", STAGE_VERSIONS["data"], src, self.exp.splits, self.exp.seed)

        def build(tmp: Path) -> None:
            col = load_source(src)
            col.splits = split_queries(col, self.exp.splits, self.exp.seed)
            col.save(tmp)

        def load(path: Path) -> Dataset:
            col = Collection.load(path)
            return Dataset(name, col, col.splits or {}, key, col.checksum(path))

        return self.cache.get_or_build("data", key, build, load, label=name)

    def datasets(self) -> list[Dataset]:
        return [self.dataset(s.name) for s in self.exp.data]

    # ---------------------------------------------------------------- retrieve
    @functools.cache
    def first_stage(self, name: str) -> SystemRun:
        ds = self.dataset(name)
        cfg = self.exp.retrieve
        if cfg.method == "candidates" or (ds.collection.candidates is not None and cfg.method == "bm25s"
                                          and ds.collection.meta.get("partial_corpus")):
            method = "candidates"  # a candidate-list collection (TREC DL top-100) can only use its lists
        else:
            method = cfg.method
        key = content_hash("retrieve", STAGE_VERSIONS["retrieve"], ds.key, cfg, method)

        def build(tmp: Path) -> None:
            if method == "candidates":
                if ds.collection.candidates is None:
                    from bench.errors import InputError

                    raise InputError(f"retrieve.method: 'candidates' but data source {name!r} has no candidate lists")
                run = Run("BM25", ds.collection.candidates.scores)
            elif method == "pyserini":
                from bench.retrieve.pyserini_bm25 import pyserini_run

                run = pyserini_run(ds.collection, cfg)
            else:
                from bench.retrieve.bm25 import bm25_run

                run = bm25_run(ds.collection, cfg)
            run.save_trec(tmp / "run.trec")

        run = self.cache.get_or_build("retrieve", key, build, lambda p: Run.load_trec(p / "run.trec", "BM25"),
                                      label=name)
        return SystemRun(SystemInfo("BM25", kind="first-stage"), name, run, key)

    # ---------------------------------------------------------------- train
    @functools.cache
    def train_results(self) -> list:
        """The training grid's cells (`bench.train.grid.CellResult`); Table 1 written alongside."""
        if self.exp.train is None:
            return []
        from bench.train.grid import TrainGrid
        from bench.train.table import write_table1

        results = TrainGrid(self).run()
        prov = stamp(self.exp.hash(), self.exp.seed, {d.name: d.checksum for d in self.datasets()})
        paths = write_table1(results, self.out_dir, prov, f"Table 1: {self.exp.name}")
        log.info("table 1: %s", paths["md"])
        return results

    # ---------------------------------------------------------------- rerank
    def system_specs(self) -> list[tuple[ScorerSpec, SystemInfo]]:
        """Every model-based system of the experiment: configured ones, then trained cells."""
        from bench.models import PRESETS

        specs = []
        for spec in self.exp.rerank.systems:
            preset = PRESETS.get(spec.model)
            specs.append((spec, SystemInfo(spec.name, kind="zero-shot", params=spec.params or (preset.params if preset else ""),
                                           family=preset.family if preset else "")))
        from bench.train.grid import trained_system

        specs.extend(trained_system(r, self.exp.train) for r in self.train_results())
        if self.exp.tune is not None:  # the sweep's best trial (selected on valid), once a sweep has run
            from bench.tune.sweep import tuned_systems

            specs.extend(tuned_systems(self))
        return specs

    def rerank_qids(self, name: str) -> list[str]:
        return self.dataset(name).qids(self.exp.evaluate.split)

    def rerank(self, name: str, spec: ScorerSpec, info: SystemInfo) -> SystemRun:
        from bench.cluster import ensure_ray
        from bench.rerank.stage import rerank_run

        first = self.first_stage(name)
        qids = self.rerank_qids(name)
        cfg = self.exp.rerank
        from bench.models import model_fingerprint

        key = content_hash("rerank", STAGE_VERSIONS["rerank"], first.key, spec, cfg.depth, qids,
                           model_fingerprint(spec.model), _adapter_fingerprint(spec))

        def build(tmp: Path) -> None:
            ensure_ray(self.exp.ray)
            run = rerank_run(self.dataset(name).collection, first.run, qids, spec, cfg)
            run.save_trec(tmp / "run.trec")

        run = self.cache.get_or_build("rerank", key, build, lambda p: Run.load_trec(p / "run.trec", spec.name),
                                      label=f"{spec.name} on {name}")
        return SystemRun(info, name, run, key)

    def system_runs(self, name: str) -> list[SystemRun]:
        from bench.rerank.stage import shared_pool

        runs = [self.first_stage(name)]
        specs = self.system_specs()  # trains the grid first, if any: before the pool takes its CPUs
        with shared_pool():  # one actor pool for all systems: start-up and imports paid once
            for spec, info in specs:
                if info.status == "ok":  # a failed training cell keeps its leaderboard row, with its error
                    runs.append(self.rerank(name, spec, info))
        return runs

    # ---------------------------------------------------------------- evaluate
    def evaluate(self, name: str) -> pd.DataFrame:
        from bench.evaluate.ir import parse_measures, per_query

        parse_measures(self.exp.evaluate.measures)  # fail on a bad measure before any work
        ds = self.dataset(name)
        runs = self.system_runs(name)
        frames = []
        for sr in runs:
            if sr.run is None:
                continue
            key = content_hash("evaluate", STAGE_VERSIONS["evaluate"], ds.key, sr.key, self.exp.evaluate.measures,
                               self.exp.evaluate.split, sr.info.name)

            def build(tmp: Path, sr=sr) -> None:
                df = per_query(sr.run, ds.collection.qrels, self.exp.evaluate.measures, name,
                               ds.qids(self.exp.evaluate.split), system=sr.info.name)
                df.to_csv(tmp / "per_query.csv", index=False)

            frames.append(self.cache.get_or_build("evaluate", key, build,
                                                  lambda p: pd.read_csv(p / "per_query.csv", dtype={"qid": str}),
                                                  label=f"{sr.info.name} on {name}"))
        return pd.concat(frames, ignore_index=True)

    # ---------------------------------------------------------------- report
    def leaderboard(self) -> Leaderboard:
        per_query = pd.concat([self.evaluate(s.name) for s in self.exp.data], ignore_index=True)
        systems = {"BM25": SystemInfo("BM25", kind="first-stage")}
        systems.update({info.name: info for _, info in self.system_specs()})
        prov = stamp(self.exp.hash(), self.exp.seed, {d.name: d.checksum for d in self.datasets()})
        board = Leaderboard.from_per_query(per_query, systems, prov, baseline=self.exp.evaluate.baseline)
        from bench.report.stage import add_significance

        add_significance(board, per_query, self.exp)  # paired tests vs the baselines, marked in every export
        if self.exp.explain is not None:  # faithfulness, grounding, Table 2 text columns per system
            board.extra_columns.update(self.explanations())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        per_query.to_csv(self.out_dir / "per_query.csv.tmp", index=False)
        Path(self.out_dir / "per_query.csv.tmp").replace(self.out_dir / "per_query.csv")
        paths = board.write(self.out_dir, f"Leaderboard: {self.exp.name}")
        write_json_atomic(self.out_dir / "config.resolved.json", {"config": self.exp.model_dump(mode="json"),
                                                                    "provenance": prov})
        log.info("leaderboard: %s", paths["md"])
        return board

    # ---------------------------------------------------------------- explain / reason
    def explain(self, name: str, spec: ScorerSpec, info: SystemInfo) -> list[dict]:
        """KernelSHAP attributions of a system's top items (cached artifact; see bench.explain.steps)."""
        from bench.explain.steps import explain_system

        return explain_system(self, name, spec, info)[0]

    def reason(self, name: str, spec: ScorerSpec, info: SystemInfo) -> tuple[list[dict], dict]:
        """LLM explanations with and without attributions, plus usage and cost."""
        from bench.explain.steps import reason_system

        return reason_system(self, name, spec, info)[:2]

    @functools.cache
    def explanations(self) -> dict[str, dict[str, float]]:
        """explain -> reason -> explanation metrics for every explained system; leaderboard columns."""
        from bench.explain.steps import explanation_columns

        return explanation_columns(self)

    def summary(self) -> str:
        # Distinct artifacts: a stage asked for twice in one run is not "reused from cache".
        done = len(set(self.cache.computed))
        reused = len(set(self.cache.reused) - set(self.cache.computed))
        if done == 0:
            return f"nothing to recompute: all {reused} stage artifacts were cached"
        return f"{done} stage artifacts computed, {reused} reused from cache"


def _adapter_fingerprint(spec: ScorerSpec) -> str | None:
    """A trained adapter's identity is its weights' hash, so a retrained cell is re-scored."""
    if not spec.adapter:
        return None
    weights = sorted(Path(spec.adapter).glob("*.safetensors"))
    return ",".join(file_sha256(w) for w in weights) or spec.adapter


def run_all(p: Pipeline) -> Leaderboard:
    """The whole experiment, in stage order."""
    for ds in p.datasets():
        p.first_stage(ds.name)
    p.train_results()
    if p.exp.explain is not None:
        p.explanations()
    return p.leaderboard()
