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
    "rouge-score", "bert-score",
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
