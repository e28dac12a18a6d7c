"""Query splits: seeded 80/10/10 as in the paper, or the dataset's own."""
from __future__ import annotations

import numpy as np

from bench.config import SplitConfig
from bench.data.collection import Collection


def split_queries(col: Collection, cfg: SplitConfig, seed: int) -> dict[str, list[str]]:
    qids = sorted(col.queries)
    if cfg.scheme == "none":
        return {"train": [], "valid": [], "test": qids}
    if cfg.scheme == "dataset":
        if not col.splits:
            from bench.errors import InputError

            raise InputError(f"splits.scheme: 'dataset' but data source {col.name!r} defines no splits of its own "
                             f"(a graded-lists file gives each query a 'split'); use 'random' or 'none'")
        return {s: sorted(col.splits.get(s, [])) for s in ("train", "valid", "test")}
    rng = np.random.default_rng(seed)
    order = [qids[i] for i in rng.permutation(len(qids))]
    n_train = int(round(cfg.train * len(order)))
    n_valid = int(round(cfg.valid * len(order)))
    # Every non-empty fraction gets at least one query when there are enough queries.
    if cfg.valid > 0 and n_valid == 0 and len(order) >= 3:
        n_valid = 1
    if cfg.test > 0 and len(order) - n_train - n_valid <= 0 and len(order) >= 3:
        n_train = len(order) - n_valid - 1
    return {"train": sorted(order[:n_train]), "valid": sorted(order[n_train:n_train + n_valid]),
            "test": sorted(order[n_train + n_valid:])}
