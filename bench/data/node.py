"""The data stage's node: a data source loaded, validated and split, cached as the `Dataset` artifact."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.artifacts import content_fingerprint, content_hash, missing_file
from bench.data.collection import Collection
from bench.provenance import library_versions


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



def dataset(p, name: str) -> Dataset:
    from bench.data.loaders import load_source
    from bench.data.splits import split_queries

    src = p.exp.source(name)
    key = content_hash("data", p.code("data"), src, source_fingerprint(src), p.exp.splits,
                       p.exp.seed, library_versions("data"))

    def build(tmp: Path) -> None:
        col = load_source(src)
        col.splits = split_queries(col, p.exp.splits, p.exp.seed)
        col.save(tmp)

    def load(path: Path) -> Dataset:
        col = Collection.load(path)
        return Dataset(name, col, col.splits or {}, key, col.checksum(path))

    return p.cache.get_or_build("data", key, build, load, label=name,
                                   validate=lambda d: (d / "collection.json").is_file() or missing_file(d))


def datasets(p) -> list[Dataset]:
    return [p.dataset(s.name) for s in p.exp.data]


