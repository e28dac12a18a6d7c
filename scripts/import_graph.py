"""The import graph of `bench`: cycles, imports back up a layer, private names imported across packages.

Every `import` / `from ... import` in a module counts, at module level or inside a function alike (a
function-level import is still a dependency; it only defers the cost). The layers are declared once,
in `LAYERS` below; docs/architecture.md draws them.

    python scripts/import_graph.py            # summary; exit 1 when a cycle or a private import is found
    python scripts/import_graph.py --edges    # every edge with its layers
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Layer of each package (or module), lowest first; a module takes the layer of its longest listed prefix.
# A module may import from its own layer or any lower one; an import of a higher layer is "upward".
LAYERS: dict[str, int] = {
    # 0 - config and artifacts: settings, the cache, errors, console, provenance, the registries
    "bench": 0, "bench.errors": 0, "bench.config_base": 0, "bench.config": 0, "bench.artifacts": 0,
    "bench.codehash": 0, "bench.console": 0, "bench.provenance": 0, "bench.registry": 0,
    # the stages' config slices and plain settings (pydantic / dataclasses only)
    "bench.explain.config": 0, "bench.explain.settings": 0, "bench.r2r.config": 0, "bench.reason.config": 0,
    "bench.report.config": 0, "bench.serve.config": 0, "bench.train.config": 0, "bench.tune.config": 0,
    # 1 - data and models: loaders, collections, metrics, model files and loading, the scorer interface,
    #     Ray plumbing
    "bench.data": 1, "bench.models": 1, "bench.model_loading": 1, "bench.evaluate": 1, "bench.systems": 1,
    "bench.rerank.prompts": 1, "bench.rerank.scorers": 1, "bench.cluster": 1, "bench.pools": 1, "bench.reaper": 1,
    # 2 - stages: first stages, re-ranking, explanation, reasons, training, reports, the stage graph and runner
    "bench.retrieve": 2, "bench.rerank": 2, "bench.explain": 2, "bench.reason": 2, "bench.r2r": 2, "bench.train": 2,
    "bench.report": 2, "bench.plane": 2, "bench.stages": 2, "bench.pipeline": 2, "bench.preflight": 2,
    # 3 - on top: the command line (and each package's subcommands), tuning, serving, performance
    "bench.cli": 3, "bench.explain.commands": 3, "bench.train.commands": 3, "bench.report.commands": 3,
    "bench.tune": 3, "bench.serve": 3, "bench.perf": 3,
}
LAYER_NAMES = ("config & artifacts", "data & models", "stages", "cli / tune / serve / perf")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    names: tuple[str, ...] = ()


@dataclass
class Graph:
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)

    def adjacency(self) -> dict[str, set[str]]:
        adj: dict[str, set[str]] = {m: set() for m in self.modules}
        for e in self.edges:
            if e.dst != e.src:
                adj[e.src].add(e.dst)
        return adj


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def build(root: Path = ROOT, package: str = "bench") -> Graph:
    """Every module of `package` under `root` and every import between two of them."""
    modules = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph = Graph(modules)
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        graph.edges.append(Edge(name, alias.name, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_pkg, node)
                if base not in modules:
                    continue
                plain = tuple(a.name for a in node.names if f"{base}.{a.name}" not in modules)
                if plain:
                    graph.edges.append(Edge(name, base, node.lineno, plain))
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:  # `from bench.x import submodule`
                        graph.edges.append(Edge(name, f"{base}.{alias.name}", node.lineno))
    return graph


def _absolute(name: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_pkg else name.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def layer(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} has no layer in LAYERS")


def package_of(module: str) -> str:
    """`bench.train.methods` -> `bench.train`; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adj = graph.adjacency()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in adj:
        if start in index:
            continue
        work = [(start, iter(sorted(adj[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(adj[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def upward(graph: Graph) -> list[Edge]:
    """Imports of a module in a higher layer, one per (importer, imported) pair."""
    seen: dict[tuple[str, str], Edge] = {}
    for e in graph.edges:
        if layer(e.dst) > layer(e.src):
            seen.setdefault((e.src, e.dst), e)
    return sorted(seen.values(), key=lambda e: (e.src, e.dst))


def private_imports(graph: Graph) -> list[tuple[Edge, str]]:
    """`from bench.x... import _name` in a module outside package `bench.x` (dunders are public)."""
    out = []
    for e in graph.edges:
        if package_of(e.src) == package_of(e.dst):
            continue
        for n in e.names:
            if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
                out.append((e, n))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="list every edge with its layers")
    args = ap.parse_args(argv)
    graph = build()
    if args.edges:
        for e in graph.edges:
            print(f"{e.src} ({layer(e.src)}) -> {e.dst} ({layer(e.dst)}) :{e.line} {','.join(e.names)}")
    loops, up, private = cycles(graph), upward(graph), private_imports(graph)
    print(f"modules {len(graph.modules)}, edges {sum(map(len, graph.adjacency().values()))}")
    print(f"import loops: {len(loops)}")
    for c in loops:
        print(f"  loop of {len(c)}: {' '.join(c)}")
    print(f"upward imports: {len(up)}")
    for e in up:
        print(f"  {e.src} ({LAYER_NAMES[layer(e.src)]}) -> {e.dst} ({LAYER_NAMES[layer(e.dst)]}) line {e.line}")
    print(f"private names imported across packages: {len(private)}")
    for e, n in private:
        print(f"  {e.src}:{e.line} imports {n} from {e.dst}")
    return 1 if loops or private else 0


if __name__ == "__main__":
    sys.exit(main())
