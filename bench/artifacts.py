"""Content-addressed stage artifacts, written atomically.

Every stage writes under `results/<experiment>/<stage>/<key>/`, where `key` is a hash of
everything that determines the output: the stage's config slice, the keys of its input
artifacts, and the stage's code version. A directory only becomes visible (by an atomic
rename) once the stage has finished writing it, so an interrupted run leaves no half-written
artifact and simply resumes: finished artifacts are found by key, the rest is recomputed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from bench import __version__

log = logging.getLogger("bench")
T = TypeVar("T")

DONE_MARKER = "_DONE.json"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not hashable as JSON: {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_jsonable, separators=(",", ":"))


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable hash of JSON-serialisable parts (pydantic models and dataclasses allowed)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(canonical_json(part).encode())
        h.update(b"\x00")
    return h.hexdigest()[:length]


def file_sha256(path: Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


# ---------------------------------------------------------------- atomic single files
@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable, sort_keys=False) + "\n")


# ---------------------------------------------------------------- stage cache
class StageCache:
    """Finds or produces stage artifacts under `root/<stage>/<key>/`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.computed: list[tuple[str, str]] = []  # (stage, key) computed in this process
        self.reused: list[tuple[str, str]] = []

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / DONE_MARKER).is_file()

    def get_or_build(
        self,
        stage: str,
        key: str,
        build: Callable[[Path], Any],
        load: Callable[[Path], T],
        *,
        label: str = "",
        meta: dict | None = None,
    ) -> T:
        """Load the artifact for (stage, key) if finished; else build it atomically, then load.

        `build(tmp_dir)` writes the artifact's files into a fresh temporary directory; it is
        renamed into place only after `build` returns, with a done-marker holding `meta`.
        """
        final = self.path(stage, key)
        what = f"{stage}{' ' + label if label else ''}"
        if self.is_done(stage, key):
            log.info("%s: cached, nothing to do (%s)", what, final)
            self.reused.append((stage, key))
            return load(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        started = time.time()
        try:
            build(tmp)
            marker = {"stage": stage, "key": key, "label": label, "seconds": round(time.time() - started, 3),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "bench_version": __version__, **(meta or {})}
            (tmp / DONE_MARKER).write_text(json.dumps(marker, indent=2, default=_jsonable) + "\n")
            if final.exists():  # a stale, unfinished attempt from an interrupted run
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("%s: computed in %.1fs (%s)", what, time.time() - started, final)
        self.computed.append((stage, key))
        return load(final)
