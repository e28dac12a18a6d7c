"""First stages, registered by name (`retrieve.method`): the harness's own and any other package's, through an
entry point of group `rerank_bench.first_stages` naming a function

    def my_first_stage(collection, cfg, **context) -> bench.data.collection.Run

`cfg` is the `retrieve` config slice (`depth`: documents kept per query); `context` holds `label` (the run's row
name), `method`, `dataset` (the loaded data source) and `pipeline`. A plugin's artifact key holds its name, the
data source's key, the retrieve config and the function's `version` attribute (default none): bump it when its
code changes what it retrieves.
"""
from __future__ import annotations

from bench.data.collection import Run
from bench.errors import InputError
from bench.registry import Registry, registry

BUILTIN = ("bm25s", "pyserini", "candidates", "dense", "hybrid")
# The modules that compute each built-in first stage: their code is part of the retrieve artifact's key.
CODE = {"candidates": ("bench.data.collection",), "bm25s": ("bench.retrieve.bm25",),
        "pyserini": ("bench.retrieve.pyserini_bm25",), "dense": ("bench.retrieve.dense",),
        "hybrid": ("bench.retrieve.dense",)}


def candidates(collection, cfg, *, label: str, dataset, **_) -> Run:
    if collection.candidates is None:
        raise InputError(f"retrieve.method: 'candidates' but data source {dataset.name!r} has no candidate lists")
    return Run(label, collection.candidates.scores)


def bm25s(collection, cfg, **_) -> Run:
    from bench.retrieve.bm25 import bm25_run

    return bm25_run(collection, cfg)


def pyserini(collection, cfg, **_) -> Run:
    from bench.retrieve.pyserini_bm25 import pyserini_run

    return pyserini_run(collection, cfg)


def dense_or_hybrid(collection, cfg, *, pipeline, dataset, method: str, **_) -> Run:
    from bench.retrieve.dense import dense_or_hybrid_run

    return dense_or_hybrid_run(pipeline, dataset, cfg, method)


FIRST_STAGES: Registry = registry("first_stages")
for _name, _fn in {"bm25s": bm25s, "pyserini": pyserini, "candidates": candidates, "dense": dense_or_hybrid,
                   "hybrid": dense_or_hybrid}.items():
    FIRST_STAGES.register(_name, _fn, replace=True)
