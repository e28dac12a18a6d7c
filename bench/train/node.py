"""The train stage's node: the grid of model families x training methods (`bench.train.grid`), each cell a cached
artifact, and Table 1 written alongside."""
from __future__ import annotations

from bench.console import stage
from bench.provenance import stamp


def train_results(p) -> list:
    """The training grid's cells (`bench.train.grid.CellResult`); Table 1 written alongside."""
    if p.exp.train is None:
        return []
    from bench.train.grid import TrainGrid
    from bench.train.table import write_table1

    with stage("train", "grid") as st:
        results = TrainGrid(p).run()
        prov = stamp(p.exp.hash(), p.exp.seed, {d.name: d.checksum for d in p.datasets()})
        paths = write_table1(results, p.out_dir, prov, f"Table 1: {p.exp.name}")
        ok = sum(r.status == "ok" for r in results)
        st["note"] = f"{ok}/{len(results)} cells ok; {paths['md']}"
    return results


