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


def cache_root() -> Path:
    """Where built models and file hashes are kept: `$RERANK_BENCH_CACHE` (default `~/.cache/rerank-bench`)."""
    return Path(os.environ.get("RERANK_BENCH_CACHE", Path.home() / ".cache" / "rerank-bench"))


def _hash_cache_file() -> Path:
    return cache_root() / "file-hashes.json"


_HASHES: dict[str, tuple[int, int, str]] | None = None


def content_fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes, or of every file under a directory (relative names included).

    Hashed once per (path, size, mtime): the result is cached in `$RERANK_BENCH_CACHE/file-hashes.json`,
    so large corpora are read again only after they change.
    """
    global _HASHES
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return content_hash([(str(f.relative_to(path)), content_fingerprint(f)) for f in files])
    if _HASHES is None:
        try:
            _HASHES = {k: tuple(v) for k, v in json.loads(_hash_cache_file().read_text()).items()}
        except (OSError, ValueError):
            _HASHES = {}
    st = path.stat()
    hit = _HASHES.get(str(path))
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    digest = file_sha256(path, 32)
    _HASHES[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    try:
        write_json_atomic(_hash_cache_file(), _HASHES)
    except OSError:
        pass  # a read-only cache dir only costs re-hashing next time
    return digest


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

    def counts(self, stage: str) -> tuple[int, int]:
        """(computed, reused) artifacts of a stage so far in this process."""
        return (sum(s == stage for s, _ in self.computed), sum(s == stage for s, _ in self.reused))

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
        validate: Callable[[Path], Any] | None = None,
    ) -> T:
        """Load the artifact for (stage, key) if finished; else build it atomically, then load.

        `build(tmp_dir)` writes the artifact's files into a fresh temporary directory. The files
        are then checked (`validate(tmp_dir)`, by default `load(tmp_dir)`), and only then does the
        directory get its done-marker and its final name. A build or check that fails leaves
        nothing behind, not even the folders created for it, so no later run can reuse it.
        """
        final = self.path(stage, key)
        what = f"{stage}{' ' + label if label else ''}"
        if self.is_done(stage, key):
            log.debug("%s: cached, nothing to do (%s)", what, final)
            self.reused.append((stage, key))
            return load(final)
        created = first_missing(final.parent)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        started = time.time()
        ok = False
        try:
            build(tmp)
            (validate or load)(tmp)
            marker = {"stage": stage, "key": key, "label": label, "seconds": round(time.time() - started, 3),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "bench_version": __version__, **(meta or {})}
            (tmp / DONE_MARKER).write_text(json.dumps(marker, indent=2, default=_jsonable) + "\n")
            publish(tmp, final)
            ok = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if not ok:
                remove_if_empty(created)
        log.debug("%s: computed in %.1fs (%s)", what, time.time() - started, final)
        self.computed.append((stage, key))
        return load(final)


def publish(tmp: Path, final: Path) -> None:
    """Give a finished artifact its final name, atomically, without ever deleting a finished one.

    If another process finished the same key meanwhile (its folder has the done-marker), its artifact is
    kept and this copy dropped: both were built from the same inputs. A folder without the marker is an
    interrupted attempt; it is first renamed aside (atomic), so no reader ever sees a half-deleted folder.
    (Before, the final folder was deleted and then replaced: a concurrent run could lose a finished one.)"""
    for _ in range(5):
        try:
            os.rename(tmp, final)  # fails when `final` exists (and is not empty): nothing is overwritten
            return
        except OSError:
            if (final / DONE_MARKER).is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if final.exists():
                aside = final.with_name(f".{final.name}.stale-{os.getpid()}-{time.time_ns()}")
                try:
                    os.rename(final, aside)
                except OSError:
                    continue  # someone else moved or finished it: look again
                shutil.rmtree(aside, ignore_errors=True)
    raise RuntimeError(f"could not publish artifact {final}")


def first_missing(path: Path) -> Path | None:
    """The outermost ancestor of `path` (or `path` itself) that does not exist yet."""
    path = Path(path).absolute()
    missing = None
    while not path.exists():
        missing = path
        if path.parent == path:
            break
        path = path.parent
    return missing


def remove_if_empty(path: Path | None) -> None:
    """Remove `path` if it holds nothing but empty folders (what a failed step created)."""
    if path is None or not path.is_dir():
        return
    if any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        return
    shutil.rmtree(path, ignore_errors=True)


def missing_file(path: Path):
    """A cached artifact's `validate` hook: the folder lacks a file it must hold."""
    raise RuntimeError(f"artifact {path} is missing a file")


def read_json_or_empty(path: Path) -> dict:
    """An artifact's optional JSON file; {} when absent."""
    return json.loads(path.read_text()) if path.is_file() else {}
