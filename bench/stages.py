"""The stage graph, declared once: each stage's inputs, output artifact, what its cache key holds, and the function
that computes it. `bench.pipeline.Pipeline` is a small generic runner over this graph.

A stage's run function lives in its own package (`bench.<package>.node`) and takes the runner first:
`run(p, *args)`; it reads its inputs through the runner (`p.dataset(name)`, `p.first_stage(name)`, ...: each
stage is reachable under its `method` name) and caches its artifact under a key made of its `code` fingerprint
(`p.code(stage)`: `bench.codehash` over the modules named here and everything they import), its inputs' keys and
its config slice. Adding a stage: write its node function, then one `STAGES.add(Stage(...))` line below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from bench.data import node as data
from bench.evaluate import node as evaluate
from bench.explain import node as explain
from bench.explain.steps import STAGE_CODE as EXPLAIN_CODE
from bench.r2r import node as r2r
from bench.report import node as report
from bench.rerank import node as rerank
from bench.retrieve import node as retrieve
from bench.retrieve.registry import CODE as FIRST_STAGE_CODE
from bench.train import node as train
from bench.train.grid import TRAIN_CODE


@dataclass(frozen=True)
class Stage:
    """One node of the graph."""

    name: str
    run: Callable  # (runner, *args) -> the artifact
    inputs: tuple[str, ...]  # the stages whose artifacts it reads
    output: str  # the artifact it returns (and, between brackets, the files it caches)
    key: str  # what its cache key holds besides its code and its inputs' keys
    code: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # variant ("" = the stage) -> code modules
    per: str = "data source"  # what one artifact covers: data source, experiment, system x data source
    method: str = ""  # the runner's accessor; default the run function's name
    memo: bool = True  # kept in memory for the runner's life (else only on disk)

    @property
    def accessor(self) -> str:
        return self.method or self.run.__name__


class StageGraph(Mapping[str, Stage]):
    """Stages by name, in registration order (a stage is registered after its inputs), with the runner's views."""

    def __init__(self):
        self._stages: dict[str, Stage] = {}
        self._accessors: dict[str, Stage] = {}
        self.views: dict[str, tuple[Callable, bool]] = {}  # accessor -> (function of the runner, memoised)

    def add(self, stage: Stage) -> Stage:
        missing = [i for i in stage.inputs if i not in self._stages]
        if missing:
            raise ValueError(f"stage {stage.name!r}: inputs {missing} are not registered before it")
        if stage.name in self._stages or stage.accessor in self._accessors:
            raise ValueError(f"stage {stage.name!r} (or its accessor {stage.accessor!r}) is registered already")
        self._stages[stage.name] = self._accessors[stage.accessor] = stage
        return stage

    def view(self, fn: Callable, memo: bool = False) -> Callable:
        """A derived value of the runner that is no artifact of its own (`p.rerank_qids(name)`, ...)."""
        self.views[fn.__name__] = (fn, memo)
        return fn

    def by_accessor(self) -> Mapping[str, Stage]:
        return self._accessors

    def __getitem__(self, name: str) -> Stage:
        return self._stages[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def mermaid(self) -> str:
        """The graph as a mermaid flowchart (docs/architecture.md holds it; a test keeps them equal)."""
        lines = ["flowchart LR"]
        for s in self._stages.values():
            lines.append(f'    {s.name}["{s.name}<br/><small>{s.output.split(" (")[0]}</small>"]')
        for s in self._stages.values():
            lines += [f"    {i} --> {s.name}" for i in s.inputs]
        return "\n".join(lines)


STAGES = StageGraph()
STAGES.add(Stage("data", data.dataset, (), "Dataset (collection.json, splits)",
                 "the source's config and input files' contents, the split settings, the seed, library versions",
                 {"": ("bench.data.loaders", "bench.data.splits", "bench.data.collection")}))
STAGES.add(Stage("retrieve", retrieve.first_stage, ("data",), "SystemRun (run.trec)",
                 "the retrieve config, the method (its code by method; a plugin's name and version), the dense "
                 "encoder's weights, library versions", FIRST_STAGE_CODE))
STAGES.add(Stage("teacher", r2r.teacher, ("data", "retrieve"), "teacher lists (lists.jsonl, summary.json)",
                 "the teacher's settings and endpoint, the training and reference queries",
                 {"": ("bench.r2r.teacher",)}))
STAGES.add(Stage("train", train.train_results, ("data", "retrieve", "teacher"),
                 "CellResult per cell (adapter/ or model/, metrics.json; Table 1)",
                 "per cell: model weights, method, scorer kind, hyperparameters, prompt, seed, scaling, its data, "
                 "the reward model cell's key (PPO), library versions", {"": TRAIN_CODE}, per="experiment"))
STAGES.add(Stage("rerank", rerank.rerank_all, ("retrieve", "train"),
                 "SystemRun per system x data source (run.trec, cuts.json)",
                 "the scorer (model and adapter by their weights), compute identity, depth, the queries, library "
                 "versions", {"": ("bench.rerank.stage",)}, per="experiment"))
STAGES.add(Stage("runs", rerank.run_file_systems, ("data",), "SystemRun per run file",
                 "the run file's contents and the system's name", method="run_file_systems"))
STAGES.add(Stage("listwise", rerank.listwise_runs, ("retrieve",), "SystemRun per listwise system (run.trec, "
                 "listwise.json)", "the listwise settings and endpoint, the first stage's key, the queries",
                 {"": ("bench.rerank.listwise",)}))
STAGES.add(Stage("evaluate", evaluate.evaluate, ("data", "retrieve", "runs", "listwise", "rerank"),
                 "per-query measures (per_query.csv per run)", "the run's key, the measures, the split, the system",
                 {"": ("bench.evaluate.ir",)}, memo=False))
STAGES.add(Stage("explain", explain.explain_all, ("rerank",), "ExplainArtifact per system x data source "
                 "(items.jsonl, rankings.jsonl)", "the ranking's key, the explain config (not its resources), the "
                 "system's scorer, the seed, the queries", {"": EXPLAIN_CODE["explain"]}, per="experiment"))
STAGES.add(Stage("reason", explain.reason, ("explain",), "ReasonArtifact (LLM explanations, usage, cost)",
                 "the explanation's key, the reason config (not its transport)", {"": EXPLAIN_CODE["reason"]},
                 per="system x data source"))
STAGES.add(Stage("explanations", explain.explanations, ("explain", "reason", "evaluate"),
                 "explanation metrics and outputs (explanations.json, explainability.*)",
                 "the explanations' keys, the runs' keys, the queries, the metric settings",
                 {"": EXPLAIN_CODE["explanations"]}, per="experiment"))
STAGES.add(Stage("report", report.leaderboard, ("evaluate", "explanations", "teacher", "train"),
                 "Leaderboard (leaderboard.*, per_query.csv, significance, R2R tables)",
                 "nothing cached: written from its inputs every time", per="experiment", memo=False))

# Views: values of the runner derived from artifacts (each in its stage's node module).
for _fn, _memo in ((data.datasets, False), (retrieve.first_stage_method, True), (retrieve.retrieve_key, False),
                   (retrieve.first_stage_name, False), (rerank.system_specs, False), (rerank.rerank_qids, False),
                   (rerank.rerank_key, False), (rerank.rerank, False), (rerank.system_runs, False),
                   (rerank.all_systems, False), (r2r.teacher_data, False), (explain.explained_systems, False),
                   (explain.explain_qids, False), (explain.explain, False), (report.prepare, False),
                   (report.flags, False)):
    STAGES.view(_fn, _memo)
