"""What every result is stamped with: versions, config hash, seed, git commit, data checksums."""
from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import subprocess
import time
from pathlib import Path

from bench import __version__

TRACKED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "ray", "shap", "bm25s",
    "ir-measures", "pytrec-eval-terrier", "openai", "numpy", "pandas", "scipy", "sacrebleu",
    "rouge-score", "bert-score", "sentence-transformers", "PyStemmer",
)


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"rerank-bench": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def stamp(config_hash: str, seed: int, data_checksums: dict[str, str] | None = None) -> dict:
    return {
        "config_hash": config_hash,
        "seed": seed,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "data_checksums": data_checksums or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# Libraries whose versions decide what a stage computes: part of that stage's artifact keys, so
# an upgrade recomputes instead of mixing results of two versions.
STAGE_LIBRARIES = {
    "data": ("bm25s", "PyStemmer"),  # Climate-FEVER's BM25 negatives
    "retrieve": ("bm25s", "PyStemmer"),
    "train": ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "sentence-transformers"),
    "rerank": ("torch", "transformers", "peft", "sentence-transformers"),
    "explain": ("torch", "transformers", "peft", "shap", "sentence-transformers"),
    "evaluate": ("ir-measures", "pytrec-eval-terrier"),
}


@functools.lru_cache(maxsize=None)
def library_versions(stage: str) -> dict[str, str]:
    out = {}
    for name in STAGE_LIBRARIES.get(stage, ()):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out
