"""One pipeline, stage by stage, each stage a cached artifact keyed by what determines it.

    data -> retrieve -> (pairs -> train) -> rerank -> (explain -> reason) -> evaluate -> report

`Pipeline` memoises each stage's artifact in memory and on disk (`StageCache`), so
`rerank-bench evaluate` after `rerank-bench retrieve` recomputes nothing that is already
there, and an interrupted `run` resumes from its finished stages. A stage's key covers
everything that decides its output: its config slice, the contents of its input files and
models (tokenizer included), its input artifacts' keys, its code version and the versions of
the libraries that compute it.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.artifacts import StageCache, content_fingerprint, content_hash, write_json_atomic
from bench.config import FIRST_STAGE_NAME, Experiment, RunSystem, ScorerSpec
from bench.console import stage
from bench.data.collection import Collection, Run
from bench.errors import InputError
from bench.provenance import library_versions, stamp
from bench.report.leaderboard import Leaderboard
from bench.report.stage import baselines_of
from bench.systems import SystemInfo, SystemRun

log = logging.getLogger("bench")

# The modules that compute each stage's artifact: their code (and every bench module they import) is part of
# the stage's key (`bench.codehash`), so a code change recomputes what it could change - no version to bump.
STAGE_CODE = {"data": ("bench.data.loaders", "bench.data.splits", "bench.data.collection"),
              # the first stage's code by method: a BM25 run does not depend on the dense encoder's code
              "retrieve:candidates": ("bench.data.collection",), "retrieve:bm25s": ("bench.retrieve.bm25",),
              "retrieve:pyserini": ("bench.retrieve.pyserini_bm25",),
              "retrieve:dense": ("bench.retrieve.dense",), "retrieve:hybrid": ("bench.retrieve.dense",),
              "rerank": ("bench.rerank.stage",), "listwise": ("bench.rerank.listwise",),
              "teacher": ("bench.r2r.teacher",), "evaluate": ("bench.evaluate.ir",)}


def stage_code(stage: str) -> str:
    from bench.codehash import code_fingerprint

    return code_fingerprint(*STAGE_CODE[stage])


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


def source_fingerprint(src) -> dict[str, str]:
    """The contents of every input file or folder a data source names (the demo: its shipped file)."""
    from bench.data.loaders import demo_path

    paths = {name: getattr(src, name) for name in type(src).model_fields if isinstance(getattr(src, name), Path)}
    if src.loader == "demo":
        paths["demo"] = demo_path()
    return {name: (content_fingerprint(p) if Path(p).exists() else "missing") for name, p in sorted(paths.items())}


def scorer_identity(spec: ScorerSpec) -> dict:
    """What decides a scorer's scores: the spec without labels; the adapter by its weights."""
    from bench.models import model_fingerprint

    ident = spec.model_dump(mode="json", exclude={"name", "params", "adapter", "datasets"})
    ident["model"] = model_fingerprint(spec.model)
    ident["adapter"] = _adapter_fingerprint(spec)
    return ident


class Pipeline:
    def __init__(self, exp: Experiment):
        self.exp = exp
        # Absolute: Ray workers (training cells, actors) run in other working directories.
        self.out_dir = Path(exp.out_dir).expanduser().absolute()
        self.cache = StageCache(self.out_dir)
        from bench.console import count_artifacts_with

        count_artifacts_with(self.cache.counts)

    def preflight(self) -> None:
        """Cheap checks of everything a later stage would trip on, before any stage runs."""
        from bench.errors import require_file, require_writable_dir
        from bench.evaluate.ir import parse_measures
        from bench.models import check_model
        from bench.report.stage import check_report

        require_writable_dir(self.exp.results_dir, "results_dir")
        parse_measures(self.exp.evaluate.measures)
        check_report(self)
        names = [s.name for s in self.exp.data]
        for i, spec in enumerate(self.exp.rerank.scorers):
            check_model(spec.model)
            if spec.adapter is not None and not (Path(spec.adapter) / "adapter_config.json").is_file():
                raise InputError(f"rerank.systems ({spec.name}).adapter: {spec.adapter} is not a peft adapter folder "
                                 f"(no adapter_config.json)")
            unknown = [d for d in spec.datasets or [] if d not in names]
            if unknown:
                raise InputError(f"rerank.systems ({spec.name}).datasets: unknown data source {unknown[0]!r}; "
                                 f"expected one of {', '.join(names)}")
        for i, rs in enumerate(self.exp.rerank.run_systems):
            require_file(rs.run, "run file", f"rerank.systems.{i}.run")
            if rs.dataset is not None and rs.dataset not in names:
                raise InputError(f"rerank.systems.{i}.dataset: unknown data source {rs.dataset!r}; "
                                 f"expected one of {', '.join(names)}")
            if rs.dataset is None and len(names) > 1:
                raise InputError(f"rerank.systems.{i}.dataset: the experiment has several data sources; "
                                 f"name the one run {rs.name!r} ranks")
        if self.exp.train is not None:
            from bench.train.grid import preflight as check_train

            check_train(self)
            if any(m.startswith("r2r-") for m in self.exp.train.methods):
                import ir_measures

                have = {str(ir_measures.parse_measure(m)) for m in self.exp.evaluate.measures}
                if not {"nDCG@5", "nDCG@10"} <= have:
                    raise InputError("evaluate.measures: the R2R tables report nDCG@5 and nDCG@10; add both")
        self.check_system_names()
        self.check_held_out()
        if self.exp.explain is not None or self.exp.reason is not None:
            from bench.explain.steps import preflight as check_explain

            check_explain(self.exp)

    def check_held_out(self) -> None:
        """A trained system is evaluated on held-out queries only: `evaluate.split` all or train would score it
        on queries it trained on, unless the config says so explicitly (then those scores are flagged)."""
        ev = self.exp.evaluate
        trains = self.exp.train is not None or (self.exp.tune is not None and self.exp.tune.space is not None)
        if trains and ev.split in ("all", "train") and not ev.allow_training_queries:
            raise InputError(f"evaluate.split: {ev.split!r} includes the training queries of the trained systems; "
                             f"evaluate on held-out queries (split: test, or valid) or set "
                             f"evaluate.allow_training_queries: true to score them there, flagged in every table")

    def check_system_names(self) -> None:
        """Every row of a leaderboard is one system: names may not repeat, nor take the first stage's."""
        from collections import Counter

        names = [s.name for s in self.exp.rerank.systems]
        if self.exp.train is not None:
            from bench.train.grid import planned_cell_names

            names += planned_cell_names(self.exp)
        repeated = sorted(n for n, c in Counter(names).items() if c > 1)
        if repeated:
            raise InputError(f"system names must be unique: {', '.join(repeated)} is used by two systems "
                             f"(rerank.systems and trained cells named <model label>-<method>)")
        first = {FIRST_STAGE_NAME, self.exp.retrieve.display_name}
        taken = sorted(first & set(names))
        if taken:
            raise InputError(f"system name {taken[0]!r} is the first stage's name; give the system another name")

    # ---------------------------------------------------------------- data
    @functools.cache
    def dataset(self, name: str) -> Dataset:
        from bench.data.loaders import load_source
        from bench.data.splits import split_queries

        src = self.exp.source(name)
        key = content_hash("data", stage_code("data"), src, source_fingerprint(src), self.exp.splits,
                           self.exp.seed, library_versions("data"))

        def build(tmp: Path) -> None:
            col = load_source(src)
            col.splits = split_queries(col, self.exp.splits, self.exp.seed)
            col.save(tmp)

        def load(path: Path) -> Dataset:
            col = Collection.load(path)
            return Dataset(name, col, col.splits or {}, key, col.checksum(path))

        return self.cache.get_or_build("data", key, build, load, label=name,
                                       validate=lambda p: (p / "collection.json").is_file() or _missing(p))

    def datasets(self) -> list[Dataset]:
        return [self.dataset(s.name) for s in self.exp.data]

    # ---------------------------------------------------------------- retrieve
    @functools.cache
    def first_stage_method(self, name: str) -> str:
        ds = self.dataset(name)
        if self.exp.retrieve.method == "candidates" or (ds.collection.candidates is not None
                                                        and ds.collection.meta.get("partial_corpus")):
            return "candidates"  # a candidate-list collection (TREC DL top-100) can only use its lists
        return self.exp.retrieve.method

    def retrieve_key(self, name: str) -> str:
        method, cfg = self.first_stage_method(name), self.exp.retrieve
        encoder = None
        if method in ("dense", "hybrid"):  # the bi-encoder by its weights, not its name
            from bench.models import model_fingerprint

            encoder = model_fingerprint(cfg.model)
        return content_hash("retrieve", stage_code(f"retrieve:{method}"), self.dataset(name).key, cfg, method, encoder,
                            library_versions("retrieve"))

    @functools.cache
    def first_stage(self, name: str) -> SystemRun:
        ds = self.dataset(name)
        cfg = self.exp.retrieve
        method = self.first_stage_method(name)
        label = self.first_stage_name(name)
        key = self.retrieve_key(name)

        def build(tmp: Path) -> None:
            if method == "candidates":
                if ds.collection.candidates is None:
                    raise InputError(f"retrieve.method: 'candidates' but data source {name!r} has no candidate lists")
                run = Run(label, ds.collection.candidates.scores)
            elif method == "pyserini":
                from bench.retrieve.pyserini_bm25 import pyserini_run

                run = pyserini_run(ds.collection, cfg)
            elif method in ("dense", "hybrid"):
                from bench.retrieve.dense import dense_or_hybrid_run

                run = dense_or_hybrid_run(self, ds, cfg, method)
            else:
                from bench.retrieve.bm25 import bm25_run

                run = bm25_run(ds.collection, cfg)
            if not any(run.scores.values()):
                raise InputError(f"retrieve: the first stage found no document for any query of data source "
                                 f"{name!r} (are the queries empty, or made of stopwords only?)")
            run.save_trec(tmp / "run.trec")

        run = self.cache.get_or_build("retrieve", key, build, lambda p: Run.load_trec(p / "run.trec", label),
                                      label=name)
        return SystemRun(SystemInfo(label, kind="first-stage", method=method), name, run, key)

    def first_stage_name(self, name: str) -> str:
        """The first stage's row: BM25 for BM25 and candidate lists, else the retrieve method's name."""
        ds = self.dataset(name)
        if ds.collection.candidates is not None and ds.collection.meta.get("partial_corpus"):
            return FIRST_STAGE_NAME  # the shipped candidate lists (TREC DL top-100) are BM25's
        return self.exp.retrieve.display_name

    # ---------------------------------------------------------------- train
    @functools.cache
    def train_results(self) -> list:
        """The training grid's cells (`bench.train.grid.CellResult`); Table 1 written alongside."""
        if self.exp.train is None:
            return []
        from bench.train.grid import TrainGrid
        from bench.train.table import write_table1

        with stage("train", "grid") as st:
            results = TrainGrid(self).run()
            prov = stamp(self.exp.hash(), self.exp.seed, {d.name: d.checksum for d in self.datasets()})
            paths = write_table1(results, self.out_dir, prov, f"Table 1: {self.exp.name}")
            ok = sum(r.status == "ok" for r in results)
            st["note"] = f"{ok}/{len(results)} cells ok; {paths['md']}"
        return results

    # ---------------------------------------------------------------- systems
    def system_specs(self) -> list[tuple[ScorerSpec, SystemInfo]]:
        """Every model-based system of the experiment: configured ones, then trained cells, then tuned."""
        from bench.models import PRESETS

        specs = []
        for spec in self.exp.rerank.scorers:
            preset = PRESETS.get(spec.model)
            specs.append((spec, SystemInfo(spec.name, kind="zero-shot", params=spec.params or (preset.params if preset else ""),
                                           family=preset.family if preset else spec.kind)))
        from bench.train.grid import trained_system

        specs.extend(trained_system(r, self.exp.train) for r in self.train_results())
        if self.exp.tune is not None:  # the sweep's best trial (selected on valid), once a sweep has run
            from bench.tune.best import tuned_systems

            specs.extend(tuned_systems(self))
        return specs

    def rerank_qids(self, name: str) -> list[str]:
        return self.dataset(name).qids(self.exp.evaluate.split)

    def _rerank_key(self, name: str, spec: ScorerSpec) -> str:
        from bench.rerank.stage import compute_identity

        return content_hash("rerank", stage_code("rerank"), self.first_stage(name).key, scorer_identity(spec),
                            compute_identity(spec.dtype, self.exp.rerank.gpus_per_actor), self.exp.rerank.depth,
                            self.rerank_qids(name), library_versions("rerank"))

    @functools.cache
    def rerank_all(self) -> dict[tuple[str, str], SystemRun]:
        """Every (model-based system, dataset) ranking. Missing ones are scored in one pass of the data
        plane (all systems, all datasets: start-up paid once), then written as cached artifacts."""
        specs = [(s, i) for s, i in self.system_specs() if i.status == "ok"]  # trains the grid first, if any
        jobs = [(ds.name, spec, info) for ds in self.datasets() for spec, info in specs
                if spec.datasets is None or ds.name in spec.datasets]
        if not jobs:
            return {}
        todo = [(n, s, i) for n, s, i in jobs if not self.cache.is_done("rerank", self._rerank_key(n, s))]
        if todo:
            with stage("rerank", f"{len(todo)} system x dataset rankings") as st:
                scored = self._score_with_plane(todo)
                for (n, spec, _), (run, cuts) in zip(todo, scored):
                    self._write_rerank(n, spec, run, cuts)
                st["note"] = f"{sum(c['pairs'] for _, c in scored)} pairs"
        out = {}
        cut_systems = []
        for n, spec, info in jobs:
            key = self._rerank_key(n, spec)
            path = self.cache.path("rerank", key)
            run = self.cache.get_or_build("rerank", key, _missing, lambda p: Run.load_trec(p / "run.trec", spec.name),
                                          label=f"{spec.name} on {n}")
            cuts = _read_json(path / "cuts.json")
            if cuts.get("any_cut"):
                cut_systems.append(f"{spec.name} on {n}: {cuts['any_cut']}/{cuts['pairs']}")
                log.debug("rerank %s on %s: %d of %d pairs cut to max_length %d (query %d, item %d)", spec.name, n,
                          cuts["any_cut"], cuts["pairs"], spec.max_length, cuts["query_cut"], cuts["item_cut"])
            out[(n, spec.name)] = SystemRun(info, n, run, key, cuts)
        if cut_systems:  # the counts per system are in leaderboard.json ("truncation") and the log file
            log.info("rerank: pairs cut to fit max_length (item first, then query) in %d of %d rankings, e.g. %s",
                     len(cut_systems), len(jobs), "; ".join(cut_systems[:2]))
        return out

    def _score_with_plane(self, todo: list) -> list[tuple[Run, dict]]:
        from bench.cluster import ensure_ray
        from bench.rerank.stage import RerankJob, score_jobs

        ensure_ray(self.exp.ray)
        return score_jobs([RerankJob(name, spec, self.dataset(name).collection, self.first_stage(name).run,
                                     self.rerank_qids(name)) for name, spec, _ in todo], self.exp.rerank)

    def _write_rerank(self, name: str, spec: ScorerSpec, run: Run, cuts: dict) -> None:
        def build(tmp: Path) -> None:
            run.save_trec(tmp / "run.trec")
            write_json_atomic(tmp / "cuts.json", {**cuts, "max_length": spec.max_length})

        self.cache.get_or_build("rerank", self._rerank_key(name, spec), build,
                                lambda p: Run.load_trec(p / "run.trec", spec.name), label=f"{spec.name} on {name}")

    def rerank(self, name: str, spec: ScorerSpec, info: SystemInfo) -> SystemRun:
        """One system's ranking of one dataset (computed with all others that are missing)."""
        runs = self.rerank_all()
        if (name, spec.name) in runs:
            return runs[(name, spec.name)]
        raise KeyError(f"no ranking of {name} by {spec.name}")

    @functools.cache
    def run_file_systems(self, name: str) -> list[SystemRun]:
        """Systems given as TREC run files (`kind: run`), checked against the collection."""
        ds = self.dataset(name)
        out = []
        for rs in self.exp.rerank.run_systems:
            if rs.dataset not in (None, name):
                continue
            run = Run.load_trec(rs.run, rs.name)
            run.check_ids(ds.collection.queries, ds.collection.corpus, what=f"run of system {rs.name!r}")
            run.name = rs.name
            key = content_hash("run-file", content_fingerprint(rs.run), rs.name)
            out.append(SystemRun(SystemInfo(rs.name, kind="run", params=rs.params or ""), name, run, key))
        return out

    @functools.cache
    def listwise_runs(self, name: str) -> list[SystemRun]:
        """Listwise LLM re-rankers (RankGPT's sliding window) of one data source: cached artifacts with the
        run and the per-query counts (calls, tokens, cost, latency, malformed / repeated / missing ids)."""
        from bench.reason.backends import ResponseCache, cost_usd, endpoint_identity
        from bench.rerank.listwise import rerank_listwise

        ds, first = self.dataset(name), self.first_stage(name)
        qids = self.rerank_qids(name)
        out = []
        for lw in self.exp.rerank.listwise_systems:
            if lw.datasets is not None and name not in lw.datasets:
                continue
            transport = {"name", "params", "datasets", *lw.TRANSPORT}
            key = content_hash("listwise", stage_code("listwise"), first.key, lw.model_dump(exclude=transport),
                               endpoint_identity(lw), qids)

            def build(tmp: Path, lw=lw) -> None:
                col = ds.collection
                docs = {d for q in qids for d, _ in first.run.ranked(q, lw.depth)}
                run, stats = rerank_listwise(lw, lw.reason_config(), col.queries,
                                             {d: col.corpus[d].full_text() for d in docs}, first.run, qids,
                                             ResponseCache(self.out_dir / "llm_cache"))
                per_query = {q: vars(st) for q, st in stats.items()}
                totals = {k: sum(st[k] for st in per_query.values()) for k in
                          ("calls", "prompt_tokens", "completion_tokens", "seconds", "cached", "malformed", "repeated",
                           "missing", "out_of_range", "failed", "parse_errors", "answer_prompt_tokens",
                           "answer_completion_tokens", "ids", "unranked")}
                totals["cost_usd"] = cost_usd(lw.reason_config(), totals["prompt_tokens"], totals["completion_tokens"])
                totals["queries"] = len(qids)
                totals["decoding"] = lw.decoding()  # provenance: the settings that decided the answers
                run.save_trec(tmp / "run.trec")
                write_json_atomic(tmp / "listwise.json", {"totals": totals, "per_query": per_query})

            with stage("rerank listwise", f"{lw.name} on {name}") as st:
                run = self.cache.get_or_build("rerank", key, build, lambda p, lw=lw: Run.load_trec(p / "run.trec", lw.name),
                                              label=f"{lw.name} on {name}")
                counts = _read_json(self.cache.path("rerank", key) / "listwise.json")
                t = counts.get("totals", {})
                st["note"] = (f"{t.get('calls', 0)} calls ({t.get('cached', 0)} cached), malformed {t.get('malformed', 0)}, "
                              f"repeated {t.get('repeated', 0)}, missing {t.get('missing', 0)}")
            info = SystemInfo(lw.name, kind="listwise", params=lw.params or "", method=_listwise_method(lw))
            out.append(SystemRun(info, name, run, key, {"listwise": counts}))
        return out

    # ---------------------------------------------------------------- R2R teacher
    @functools.cache
    def teacher(self, name: str) -> dict:
        """The R2R teacher's lists of a data source: its training queries (the first `r2r.max_queries`) and
        `r2r.reference_queries` test queries (Table 3's references). A cached artifact."""
        from bench.reason.backends import endpoint_identity
        from bench.r2r.teacher import as_records, teach
        from bench.reason.backends import ResponseCache

        cfg = self.exp.r2r
        ds, first = self.dataset(name), self.first_stage(name)
        train = ds.splits.get("train", [])[: cfg.max_queries] if cfg.max_queries else ds.splits.get("train", [])
        reference = ds.splits.get("test", [])[: cfg.reference_queries]
        key = content_hash("teacher", stage_code("teacher"), first.key,
                           cfg.teacher.model_dump(exclude=set(cfg.teacher.TRANSPORT)), endpoint_identity(cfg.teacher),
                           train, reference)

        def build(tmp: Path) -> None:
            col = ds.collection
            qids = list(dict.fromkeys(train + reference))
            docs = {d for q in qids for d, _ in first.run.ranked(q, cfg.teacher.depth)}
            lists, summary = teach(cfg.teacher, col.queries, {d: col.corpus[d].full_text() for d in docs}, first.run,
                                   qids, ResponseCache(self.out_dir / "llm_cache"))
            _write_jsonl(tmp / "lists.jsonl", as_records(lists))
            write_json_atomic(tmp / "summary.json", {**summary, "train": train, "reference": reference})

        with stage("teacher", f"R2R {cfg.teacher.backend}:{cfg.teacher.model} on {name}") as st:
            path = self.cache.get_or_build("teacher", key, build, lambda p: p, label=name,
                                           validate=lambda p: _read_json(p / "summary.json") or _missing(p))
            summary = _read_json(path / "summary.json")
            st["note"] = (f"{summary['queries']} queries, {summary['reasons_ok']}/{summary['reason_prompts']} reasons, "
                          f"{summary['fallbacks']} rankings fell back to the first stage")
        lists = [__import__("json").loads(line) for line in (path / "lists.jsonl").read_text().splitlines() if line]
        return {"lists": lists, "summary": summary, "train": train, "reference": reference}

    def teacher_data(self, name: str) -> dict:
        """The R2R students' training data: teacher lists of the training queries, their texts, and the
        teacher's direct reasons on the reference test queries."""
        t = self.teacher(name)
        col = self.dataset(name).collection
        train = set(t["train"])
        lists = [tl for tl in t["lists"] if tl["qid"] in train]
        docs = {d for tl in t["lists"] for d in tl["docids"]}
        reference = [{"qid": tl["qid"], "docid": d, "query": tl["query"], "text": col.corpus[d].full_text(),
                      "teacher": text} for tl in t["lists"] if tl["qid"] in set(t["reference"])
                     for d, text in tl["direct"].items()]
        return {"r2r_lists": lists, "r2r_texts": {d: col.corpus[d].full_text() for d in docs},
                "r2r_reference": reference}

    def system_runs(self, name: str) -> list[SystemRun]:
        runs = [self.first_stage(name), *self.run_file_systems(name), *self.listwise_runs(name)]
        reranked = self.rerank_all()
        runs += [sr for (n, _), sr in reranked.items() if n == name]
        return runs

    def all_systems(self) -> dict[str, SystemInfo]:
        systems = {self.first_stage(d.name).info.name: self.first_stage(d.name).info for d in self.datasets()}
        for rs in self.exp.rerank.run_systems:
            systems[rs.name] = SystemInfo(rs.name, kind="run", params=rs.params or "")
        for lw in self.exp.rerank.listwise_systems:
            systems[lw.name] = SystemInfo(lw.name, kind="listwise", params=lw.params or "", method=_listwise_method(lw))
        systems.update({info.name: info for _, info in self.system_specs()})
        return systems

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
            key = content_hash("evaluate", stage_code("evaluate"), ds.key, sr.key, self.exp.evaluate.measures,
                               self.exp.evaluate.split, sr.info.name, library_versions("evaluate"))

            def build(tmp: Path, sr=sr) -> None:
                df = per_query(sr.run, ds.collection.qrels, self.exp.evaluate.measures, name,
                               ds.qids(self.exp.evaluate.split), system=sr.info.name)
                df.to_csv(tmp / "per_query.csv", index=False)

            frames.append(self.cache.get_or_build("evaluate", key, build,
                                                  lambda p: pd.read_csv(p / "per_query.csv", dtype={"qid": str}),
                                                  label=f"{sr.info.name} on {name}"))
        return pd.concat(frames, ignore_index=True)

    # ---------------------------------------------------------------- report
    def prepare(self) -> None:
        """The stages before evaluation, each with its console lines: data, first stage, training, re-ranking."""
        with stage("data", announce=False) as st:  # input is validated here: silent until it is good
            st["note"] = ", ".join(f"{d.name}: {len(d.collection.queries)} queries, {len(d.collection.corpus)} "
                                   f"documents" for d in self.datasets())
            for d in self.datasets():
                self.run_file_systems(d.name)  # run files checked against the collections before any work
        with stage("retrieve", "first stage") as st:
            st["note"] = ", ".join(f"{d.name}: {self.first_stage(d.name).info.name}, "
                                   f"{len(self.first_stage(d.name).run.scores)} queries" for d in self.datasets())
        self.train_results()
        self.rerank_all()
        for d in self.datasets():
            self.listwise_runs(d.name)

    def leaderboard(self) -> Leaderboard:
        self.prepare()
        with stage("evaluate", "ir-measures per query") as st:
            per_query = pd.concat([self.evaluate(s.name) for s in self.exp.data], ignore_index=True)
            st["note"] = f"{per_query['system'].nunique()} systems, {per_query['qid'].nunique()} queries"
        systems = self.all_systems()
        prov = stamp(self.exp.hash(), self.exp.seed, {d.name: d.checksum for d in self.datasets()})
        board = Leaderboard.from_per_query(per_query, systems, prov, baseline=baselines_of(self.exp)[0],
                                           measures=self.exp.evaluate.measures)
        board.truncation = {}
        for (name, system), sr in self.rerank_all().items():
            board.truncation.setdefault(system, {})[name] = sr.cuts
        for d in self.datasets():
            for sr in self.listwise_runs(d.name):
                board.listwise.setdefault(sr.info.name, {})[d.name] = sr.cuts["listwise"]
        from bench.report.stage import add_significance

        add_significance(board, per_query, self.exp)  # paired tests vs the baselines, marked in every export
        board.flags = self.flags(board)
        if any(r.cell.method.startswith("r2r-") for r in self.train_results()):
            from bench.r2r.tables import write_r2r_tables

            write_r2r_tables(per_query, systems, self.train_results(), self.exp, self.out_dir, prov, board.flags)
            from bench.r2r.tables import write_r2r_cost

            taught = list(self.exp.train.datasets) or [self.exp.data[0].name]
            write_r2r_cost({d: self.teacher(d)["summary"] for d in taught}, self.exp, self.out_dir, prov)
        if any(lw.prompt == "reasoning" for lw in self.exp.rerank.listwise_systems):  # R2R Table 5
            from bench.r2r.tables import write_r2r_table5

            write_r2r_table5(per_query, systems, board.listwise, self.exp, self.out_dir, prov, board.flags)
        if self.exp.explain is not None:  # faithfulness, grounding, Table 2 text columns per system
            board.extra_columns.update(self.explanations())
            board.explain_intervals = getattr(self, "explain_intervals", {})  # faithfulness with intervals
        with stage("report", "leaderboard exports") as st:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            per_query.to_csv(self.out_dir / "per_query.csv.tmp", index=False)
            Path(self.out_dir / "per_query.csv.tmp").replace(self.out_dir / "per_query.csv")
            paths = board.write(self.out_dir, f"Leaderboard: {self.exp.name}")
            write_json_atomic(self.out_dir / "config.resolved.json", {"config": self.exp.model_dump(mode="json"),
                                                                        "provenance": prov})
            st["note"] = str(paths["md"])
        return board

    def flags(self, board) -> list:
        """Scores that are not what they seem, marked in every table (`bench.report.flags`)."""
        from bench.report.flags import repaired_flags, training_query_flags

        flags = repaired_flags(board.listwise, self.exp.report.repaired_threshold)
        if self.exp.evaluate.allow_training_queries:
            flags += training_query_flags(board.systems, [d.name for d in self.datasets()], self.exp.evaluate.split)
        return flags

    # ---------------------------------------------------------------- explain / reason
    def explained_systems(self) -> list[tuple[ScorerSpec, SystemInfo]]:
        from bench.explain.steps import selected_systems

        return selected_systems(self.system_specs(), self.exp.explain, [s.name for s in self.exp.rerank.systems])

    def explain_qids(self, name: str) -> list[str]:
        cfg = self.exp.explain
        return self.rerank_qids(name)[: cfg.max_queries] if cfg.max_queries else self.rerank_qids(name)

    @functools.cache
    def explain_all(self) -> dict:
        """(dataset, system) -> ExplainArtifact of every explained system on every data source it ranks: every
        configured explainer's attributions of its top items (and RankingSHAP of its rankings, when listed); the
        missing ones are computed in one pass of the data plane (all systems: start-up paid once)."""
        from bench.explain.steps import explain_all

        cfg = self.exp.explain
        ranked = self.rerank_all()
        pairs = [(d.name, spec) for d in self.datasets() for spec, _ in self.explained_systems()
                 if (d.name, spec.name) in ranked]
        arts = explain_all(self.cache, [(ranked[(n, spec.name)], self.dataset(n).collection, self.explain_qids(n), spec)
                                        for n, spec in pairs], cfg, self.exp.seed if cfg.seed is None else cfg.seed,
                           self.exp.ray)
        return {(n, spec.name): a for (n, spec), a in zip(pairs, arts)}

    def explain(self, name: str, system: str):
        """One system's attributions on one data source (ExplainArtifact)."""
        return self.explain_all()[(name, system)]

    @functools.cache
    def reason(self, name: str, system: str):
        """LLM explanations with and without attributions, with usage and cost (ReasonArtifact)."""
        from bench.explain.steps import reason_stage

        cfg = self.exp.reason
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else self.out_dir / "llm_cache"
        return reason_stage(self.cache, self.explain(name, system), cfg, cache_dir, f"{system} on {name}")

    @functools.cache
    def explanations(self, reason: bool = True) -> dict[str, dict[str, float]]:
        """explain -> (reason) -> explanation metrics -> outputs; the leaderboard's extra columns (the columns
        with intervals are kept in `self.explain_intervals`)."""
        from bench.explain.steps import leaderboard_columns, metrics_stage, write_explanation_outputs

        cfg = self.exp.explain
        labels = ", ".join(e.key for e in cfg.explainers)
        with stage("explain", f"{labels} attributions") as st:
            explained_by_pair = self.explain_all()
            pairs = list(explained_by_pair)
            explained = list(explained_by_pair.values())
            items = [it for a in explained for it in a.items]
            rankings = [r for a in explained for r in a.rankings]
            st["note"] = (f"{len(items)} items, {sum(it.get('status') in ('ok', 'k_clamped') for it in items)} "
                          f"explained" + (f"; {len(rankings)} rankings" if rankings else ""))
        keys, usage = [a.key for a in explained], {}
        if reason and self.exp.reason is not None:
            with stage("reason", f"{self.exp.reason.backend}:{self.exp.reason.model}") as st:
                reasoned = {(n, s): self.reason(n, s) for n, s in pairs}
                items = [it for a in reasoned.values() for it in a.items]
                keys = [a.key for a in reasoned.values()]
                usage = {f"{s} on {n}": a.summary for (n, s), a in reasoned.items()}
                st["note"] = (f"{sum(u['prompts'] for u in usage.values())} prompts, "
                              f"{sum(u['ok'] for u in usage.values())} ok, "
                              f"{sum(u['cached'] for u in usage.values())} cached")
        runs = {d.name: {sr.info.name: sr.run for sr in self.system_runs(d.name) if sr.run is not None}
                for d in self.datasets()}
        keys += [sr.key for d in self.datasets() for sr in self.system_runs(d.name)]
        rep = self.exp.report
        settings = {"k": cfg.k, "ks": list(cfg.ks), "seed": self.exp.seed, "test": rep.test,
                    "n_resamples": rep.bootstrap_resamples or 1000}
        with stage("evaluate explanations", "faithfulness with intervals over queries, grounding, text agreement"):
            metrics = metrics_stage(self.cache, items, keys, runs, {d.name: d.collection for d in self.datasets()},
                                    {d.name: self.rerank_qids(d.name) for d in self.datasets()}, rankings, settings,
                                    cfg)
        write_explanation_outputs(self.out_dir, items, metrics, usage, f"Explanations: {self.exp.name}", rankings)
        self.explain_intervals = metrics.get("intervals", {})
        if any(info.kind in ("trained", "tuned") for _, info in self.explained_systems()):
            from bench.report.explainability import write_explainability

            per_query = pd.concat([self.evaluate(d.name) for d in self.datasets()], ignore_index=True)
            prov = stamp(self.exp.hash(), self.exp.seed, {d.name: d.checksum for d in self.datasets()})
            write_explainability(items, per_query, self.all_systems(), self.exp, self.out_dir, prov)
        return leaderboard_columns(metrics, cfg.k, cfg.ks)

    def summary(self) -> str:
        # Distinct artifacts: a stage asked for twice in one run is not "reused from cache".
        done = len(set(self.cache.computed))
        reused = len(set(self.cache.reused) - set(self.cache.computed))
        if done == 0:
            return f"nothing to recompute: all {reused} stage artifacts were cached"
        return f"{done} stage artifacts computed, {reused} reused from cache"


def _missing(path: Path):
    raise RuntimeError(f"artifact {path} is missing a file")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    import json

    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def _adapter_fingerprint(spec: ScorerSpec) -> str | None:
    """A trained adapter's identity is its files' hash, so a retrained cell is re-scored."""
    if not spec.adapter:
        return None
    return content_fingerprint(Path(spec.adapter))


def run_all(p: Pipeline) -> Leaderboard:
    """The whole experiment, in stage order."""
    p.prepare()
    if p.exp.explain is not None:
        p.explanations()
    return p.leaderboard()


def _listwise_method(lw) -> str:
    """A listwise system's method label: RankGPT's plain prompt, or R2R's reasoning prompt (R2R Table 5)."""
    return "rankgpt-reasoning" if getattr(lw, "prompt", "rankgpt") == "reasoning" else "rankgpt"
