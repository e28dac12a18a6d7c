"""User-facing errors.

Every problem with a user's input (config, data files, command line, output paths) is raised
as `InputError` with a one-line message naming the file (and line), field or value and what was
expected. The CLI turns it into a single line on stderr and exit code 2, and removes whatever
the failed command had created under the results folder.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

EXIT_INPUT_ERROR = 2


class InputError(Exception):
    """Bad user input: one line, names the culprit, exit code 2."""

    def __init__(self, message: str, *, source: str | Path | None = None, line: int | None = None):
        where = ""
        if source is not None:
            where = f"{source}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + " ".join(str(message).split()))


def require_file(path: Path, what: str, field: str | None = None) -> Path:
    """Fail with an InputError unless `path` is an existing, readable file."""
    path = Path(path)
    named = f" ({field})" if field else ""
    if path.is_dir():
        raise InputError(f"{what}{named} is a directory, expected a file: {path}")
    if not path.is_file():
        raise InputError(f"{what}{named} not found: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what}{named} is not readable (permission denied): {path}")
    return path


def require_dir(path: Path, what: str, field: str | None = None) -> Path:
    path = Path(path)
    named = f" ({field})" if field else ""
    if path.exists() and not path.is_dir():
        raise InputError(f"{what}{named} is a file, expected a directory: {path}")
    if not path.is_dir():
        raise InputError(f"{what}{named} is not a directory: {path}")
    return path


def require_writable_dir(path: Path, field: str) -> None:
    """Fail unless `path` is, or can be created as, a directory we can write into.

    Probes the nearest existing ancestor with a temporary file (deleted at once), so nothing is
    left behind and the check also holds for root, for whom permission bits say little.
    """
    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{field}: cannot create {path}: {probe} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise InputError(f"{field}: cannot write under {probe}: {e.strerror or e}") from None


def one_line(err: BaseException) -> str:
    """Ray wraps a worker's traceback in its error: keep the innermost exception's line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    inner = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*:", ln)]
    text = inner[-1] if inner else (lines[-1] if lines else "")
    text = " ".join(text.split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
