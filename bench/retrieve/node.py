"""The retrieve stage's node: a data source's first-stage run (`retrieve.method`, a name of the `first_stages`
registry), cached as a TREC run."""
from __future__ import annotations

from pathlib import Path

from bench.artifacts import content_hash
from bench.config import FIRST_STAGE_NAME
from bench.data.collection import Run
from bench.errors import InputError
from bench.provenance import library_versions
from bench.systems import SystemInfo, SystemRun


def first_stage_method(p, name: str) -> str:
    ds = p.dataset(name)
    if p.exp.retrieve.method == "candidates" or (ds.collection.candidates is not None
                                                 and ds.collection.meta.get("partial_corpus")):
        return "candidates"  # a candidate-list collection (TREC DL top-100) can only use its lists
    return p.exp.retrieve.method


def retrieve_key(p, name: str) -> str:
    method, cfg = p.first_stage_method(name), p.exp.retrieve
    encoder = None
    if method in ("dense", "hybrid"):  # the bi-encoder by its weights, not its name
        from bench.models import model_fingerprint

        encoder = model_fingerprint(cfg.model)
    code = p.code("retrieve", method)
    if code is None:  # a plugin's first stage: its name and version stand for its code
        from bench.registry import lookup

        return content_hash("retrieve", method, getattr(lookup("first_stages", method), "version", None),
                            p.dataset(name).key, cfg, library_versions("retrieve"))
    return content_hash("retrieve", code, p.dataset(name).key, cfg, method, encoder, library_versions("retrieve"))


def first_stage(p, name: str) -> SystemRun:
    ds = p.dataset(name)
    cfg = p.exp.retrieve
    method = p.first_stage_method(name)
    label = p.first_stage_name(name)
    key = p.retrieve_key(name)

    def build(tmp: Path) -> None:
        from bench.retrieve.registry import FIRST_STAGES

        run = FIRST_STAGES.lookup(method)(ds.collection, cfg, label=label, method=method, dataset=ds, pipeline=p)
        if not any(run.scores.values()):
            raise InputError(f"retrieve: the first stage found no document for any query of data source "
                             f"{name!r} (are the queries empty, or made of stopwords only?)")
        run.save_trec(tmp / "run.trec")

    run = p.cache.get_or_build("retrieve", key, build, lambda d: Run.load_trec(d / "run.trec", label), label=name)
    return SystemRun(SystemInfo(label, kind="first-stage", method=method), name, run, key)


def first_stage_name(p, name: str) -> str:
    """The first stage's row: BM25 for BM25 and candidate lists, else the retrieve method's name."""
    ds = p.dataset(name)
    if ds.collection.candidates is not None and ds.collection.meta.get("partial_corpus"):
        return FIRST_STAGE_NAME  # the shipped candidate lists (TREC DL top-100) are BM25's
    return p.exp.retrieve.display_name


