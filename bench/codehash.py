"""Code fingerprints for artifact keys: a stage's key changes when the code that computes it changes.

Before, each stage carried a hand-bumped version number (`"rerank": 2`, `TRAIN_VERSION = 2`) that
nobody bumped when the fitting rule changed, so caches served artifacts of the old code. Now a stage
names the module(s) where its artifact is computed, and its key holds `code_fingerprint(...)`: a hash
of the normalised source of those modules and of every `bench` module they import, transitively,
module-level and function-level imports alike (read from the syntax tree, nothing is imported).

Normalised: the syntax tree without docstrings, so comments, blank lines, formatting and docstrings
do not recompute anything, while any change to what the code does does. Modules that cannot change an
artifact are left out, with everything only they import (`NOT_OUTPUT`): the console, the CLI, error
messages, thread pools, Ray start-up, provenance stamps, the cache itself, the registries' lookup by
name, and config slices (a config's values enter keys as values). Forgetting a module there only costs
a recomputation; the default is to include.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "bench"
PACKAGE_DIR = Path(__file__).resolve().parent

NOT_OUTPUT = frozenset({
    "bench.console", "bench.cli", "bench.errors", "bench.reaper", "bench.pools", "bench.cluster",
    "bench.provenance", "bench.artifacts", "bench.codehash", "bench.config", "bench.config_base",
    "bench.registry",  # dispatch by name: the entries' own modules are in the keys
})
NOT_OUTPUT_SUFFIXES = (".config", ".commands")


def _excluded(module: str) -> bool:
    return module in NOT_OUTPUT or module.endswith(NOT_OUTPUT_SUFFIXES)


def module_path(module: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a `bench...` module, or None when the name is not a module (e.g. a function)."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """`bench` modules a module imports anywhere in its body (also inside functions)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package upwards
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from bench.x import y` may import module x.y
    return out


@functools.lru_cache(maxsize=None)
def _parsed(text: str, module: str, is_package: bool) -> tuple[str, frozenset[str]]:
    tree = ast.parse(text)
    imports = _imports(tree, module, is_package)
    return ast.dump(_strip_docstrings(tree)), frozenset(imports)


def code_closure(*roots: str, root_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """module -> normalised source, for `roots` and every bench module they import (transitively)."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or _excluded(module):
            continue
        path = module_path(module, root_dir)
        if path is None:
            continue  # a name imported from a module, not a module itself
        source, imports = _parsed(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        seen[module] = source
        parents = {".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 1)}
        todo.extend(sorted(imports | parents))  # a package's __init__ runs before its modules
    return seen


@functools.lru_cache(maxsize=None)
def code_fingerprint(*roots: str) -> str:
    """Hash of the code that computes an artifact: `roots` and their imports (see the module docstring)."""
    h = hashlib.sha256()
    for module, source in sorted(code_closure(*roots).items()):
        h.update(module.encode())
        h.update(b"\x00")
        h.update(source.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]
