"""The evaluate stage's node: ir-measures per query of every system's run on a data source, cached per run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.artifacts import content_hash
from bench.provenance import library_versions


def evaluate(p, name: str) -> pd.DataFrame:
    from bench.evaluate.ir import parse_measures, per_query

    parse_measures(p.exp.evaluate.measures)  # fail on a bad measure before any work
    ds = p.dataset(name)
    runs = p.system_runs(name)
    frames = []
    for sr in runs:
        if sr.run is None:
            continue
        key = content_hash("evaluate", p.code("evaluate"), ds.key, sr.key, p.exp.evaluate.measures,
                           p.exp.evaluate.split, sr.info.name, library_versions("evaluate"))

        def build(tmp: Path, sr=sr) -> None:
            df = per_query(sr.run, ds.collection.qrels, p.exp.evaluate.measures, name,
                           ds.qids(p.exp.evaluate.split), system=sr.info.name)
            df.to_csv(tmp / "per_query.csv", index=False)

        frames.append(p.cache.get_or_build("evaluate", key, build,
                                              lambda d: pd.read_csv(d / "per_query.csv", dtype={"qid": str}),
                                              label=f"{sr.info.name} on {name}"))
    return pd.concat(frames, ignore_index=True)


