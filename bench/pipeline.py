"""One pipeline, stage by stage, each stage a cached artifact keyed by what determines it.

    data -> retrieve -> (teacher -> train) -> rerank -> (explain -> reason) -> evaluate -> report

The stages are declared in `bench.stages.STAGES` (inputs, output artifact, what the key holds, the code in it,
the function that computes it); `Pipeline` is a generic runner over that graph. It memoises each stage's
artifact in memory and on disk (`StageCache`), so `rerank-bench evaluate` after `rerank-bench retrieve`
recomputes nothing that is already there, and an interrupted `run` resumes from its finished stages. A stage's
key covers everything that decides its output: its config slice, the contents of its input files and models
(tokenizer included), its input artifacts' keys, its code version and the versions of the libraries that
compute it.

Each stage is reached under its accessor (`p.dataset(name)` runs stage `data`, `p.first_stage(name)` stage
`retrieve`, `p.rerank_all()`, `p.evaluate(name)`, `p.leaderboard()`, ...), each view of the graph under its
name (`p.rerank_qids(name)`, `p.system_runs(name)`, ...); `p.run(stage, *args)` is the same by stage name.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from bench.artifacts import StageCache
from bench.config import Experiment
from bench.report.leaderboard import Leaderboard
from bench.stages import STAGES, StageGraph


class Pipeline:
    """A runner over a stage graph for one experiment."""

    def __init__(self, exp: Experiment, graph: StageGraph = STAGES):
        self.exp = exp
        self.graph = graph
        # Absolute: Ray workers (training cells, actors) run in other working directories.
        self.out_dir = Path(exp.out_dir).expanduser().absolute()
        self.cache = StageCache(self.out_dir)
        self._memo: dict[tuple, Any] = {}
        from bench.console import count_artifacts_with

        count_artifacts_with(self.cache.counts)

    # ---------------------------------------------------------------- the generic runner
    def run(self, stage: str, *args, **kwargs) -> Any:
        """Stage `stage`'s artifact for `args` (e.g. a data source's name): from memory, else from its run
        function (which finds it on disk by key, or computes it)."""
        node = self.graph[stage]
        if not node.memo:
            return node.run(self, *args, **kwargs)
        key = (stage, *args, *sorted(kwargs.items()))
        if key not in self._memo:
            self._memo[key] = node.run(self, *args, **kwargs)
        return self._memo[key]

    def code(self, stage: str, variant: str = "") -> str | None:
        """The fingerprint of the code a stage (variant) declares; None for a variant it does not declare."""
        from bench.codehash import code_fingerprint

        modules = self.graph[stage].code.get(variant)
        return None if modules is None else code_fingerprint(*modules)

    def __getattr__(self, name: str):
        if name.startswith("__") or "graph" not in self.__dict__:
            raise AttributeError(name)
        stage = self.graph.by_accessor().get(name)
        if stage is not None:
            return functools.partial(self.run, stage.name)
        if name in self.graph.views:
            fn, memo = self.graph.views[name]
            return functools.partial(self._view, fn) if memo else functools.partial(fn, self)
        raise AttributeError(f"{type(self).__name__!r} has no stage or view {name!r}")

    def _view(self, fn, *args, **kwargs):
        key = (fn.__name__, *args, *sorted(kwargs.items()))
        if key not in self._memo:
            self._memo[key] = fn(self, *args, **kwargs)
        return self._memo[key]

    # ---------------------------------------------------------------- before and after the stages
    def preflight(self) -> None:
        """Cheap checks of everything a later stage would trip on, before any stage runs."""
        from bench.preflight import preflight

        preflight(self)

    def check_held_out(self) -> None:
        from bench.preflight import check_held_out

        check_held_out(self)

    def check_system_names(self) -> None:
        from bench.preflight import check_system_names

        check_system_names(self)

    def _rerank_key(self, name: str, spec) -> str:  # the name the cache tests know
        return self.rerank_key(name, spec)

    def summary(self) -> str:
        # Distinct artifacts: a stage asked for twice in one run is not "reused from cache".
        done = len(set(self.cache.computed))
        reused = len(set(self.cache.reused) - set(self.cache.computed))
        if done == 0:
            return f"nothing to recompute: all {reused} stage artifacts were cached"
        return f"{done} stage artifacts computed, {reused} reused from cache"


def run_all(p: Pipeline) -> Leaderboard:
    """The whole experiment, in stage order."""
    p.prepare()
    if p.exp.explain is not None:
        p.explanations()
    return p.leaderboard()
