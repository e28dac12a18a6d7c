"""Extension points: one registry per kind, which a user's own package extends through entry points.

Kinds (`KINDS`): `scorers` (a scorer kind: `ScorerSpec.kind` -> a `Scorer` class), `explainers` (an
`Explainer`), `methods` (a `TrainingMethod`), `first_stages` (a first-stage retriever) and `data_loaders`
(a data source's loader). The harness registers its own entries in the kind's provider module
(`KINDS[kind]`), which the registry imports the first time the kind is looked up; a user's package adds
entries, without editing the harness, in its packaging metadata:

    [project.entry-points."rerank_bench.explainers"]
    occlusion = "my_pkg.explain:Occlusion"

An entry point is loaded when its name is first asked for (`get`), not before; listing names (`names`)
loads nothing. A class given for a kind whose entries are instances (`explainers`, `methods`) is
instantiated without arguments.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Callable, Iterator, Mapping

GROUP_PREFIX = "rerank_bench."

# kind -> (provider module of the harness's own entries, whether an entry is an instance rather than a class)
KINDS: dict[str, tuple[str, bool]] = {
    "scorers": ("bench.rerank.scorers", False),
    "explainers": ("bench.explain.explainers.registry", True),
    "methods": ("bench.train.registry", True),
    "first_stages": ("bench.retrieve.registry", False),
    "data_loaders": ("bench.data.loaders", False),
}


class Registry(Mapping[str, Any]):
    """Name -> entry of one kind: the harness's own entries, then entry points of group `rerank_bench.<kind>`."""

    def __init__(self, kind: str, provider: str | None, instances: bool = False):
        self.kind, self.provider, self.instances = kind, provider, instances
        self.group = GROUP_PREFIX + kind
        self._entries: dict[str, Any] = {}
        self._builtins_loaded = provider is None

    # ------------------------------------------------------------------ registering
    def register(self, name: str, entry: Any = None, *, replace: bool = False) -> Any:
        """Add `entry` under `name` (or use as a decorator: `@registry("explainers").register("occlusion")`)."""
        if entry is None:
            return lambda obj: self.register(name, obj, replace=replace)
        if name in self._entries and self._entries[name] is not entry and not replace:
            raise ValueError(f"{self.kind}: {name!r} is registered already")
        self._entries[name] = self._made(entry)
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _made(self, entry: Any) -> Any:
        return entry() if self.instances and isinstance(entry, type) else entry

    # ------------------------------------------------------------------ looking up
    def _builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True  # set first: the provider registers, and may look up, while importing
            try:
                importlib.import_module(self.provider)  # registers the harness's own entries
            except BaseException:
                self._builtins_loaded = False
                raise

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """Entry points of this kind on the current `sys.path`, by name (nothing loaded)."""
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """The harness's own names in registration order, then plugin names (sorted)."""
        self._builtins()
        return list(self._entries) + sorted(set(self.entry_points()) - set(self._entries))

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def lookup(self, name: str) -> Any:
        """The entry, or a ValueError naming the known ones (config validation turns it into a one-line error)."""
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"unknown {self.singular} {name!r}; expected one of {sorted(self.names())}") from None

    @property
    def singular(self) -> str:
        return {"methods": "method", "first_stages": "first stage", "data_loaders": "data loader",
                "scorers": "scorer kind"}.get(self.kind, self.kind.rstrip("s"))

    def __getitem__(self, name: str) -> Any:
        self._builtins()
        if name not in self._entries:
            ep = self.entry_points().get(name)
            if ep is None:
                raise KeyError(name)
            self._entries[name] = self._made(ep.load())
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


_REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The registry of `kind` (one of `KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown extension kind {kind!r}; expected one of {sorted(KINDS)}")
    if kind not in _REGISTRIES:
        provider, instances = KINDS[kind]
        _REGISTRIES[kind] = Registry(kind, provider, instances)
    return _REGISTRIES[kind]


def lookup(kind: str, name: str) -> Any:
    return registry(kind).lookup(name)


def plugin(kind: str) -> Callable[[Any], Any]:
    """Decorator for a plugin module that registers in code rather than through an entry point."""
    def add(obj: Any) -> Any:
        return registry(kind).register(getattr(obj, "name", obj.__name__), obj)
    return add


def plugin_names(kind: str, value: Any, builtin: Any) -> list[str]:
    """The names in `value` (a name or a list of names) that are not the harness's own (`builtin`) but that a plugin
    registers for `kind`. Config fields keep their own type (and its error message) for every other name."""
    names = value if isinstance(value, list) else [value]
    outside = [n for n in names if isinstance(n, str) and n not in builtin]
    if not outside:
        return []
    reg = registry(kind)
    return [n for n in outside if n in reg]


def accept_plugins(kind: str, builtin: Any) -> Callable:
    """A pydantic wrap validator (`field_validator(..., mode="wrap")(accept_plugins(...))`): a plugin's names pass,
    the rest is validated by the field's own type."""
    def validate(value, handler):
        extra = plugin_names(kind, value, builtin)
        if not extra:
            return handler(value)
        if isinstance(value, list):
            return handler([n for n in value if n not in extra]) + extra
        return value
    return validate
