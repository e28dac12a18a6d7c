"""User-facing errors.

Every problem with a user's input (config, data files, command line) is raised as
`InputError` with a one-line message naming the file, field or value and what was expected.
The CLI turns it into a single line on stderr and exit code 2, before anything is written.
"""
from __future__ import annotations

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
    """Fail with an InputError unless `path` is an existing file."""
    path = Path(path)
    if not path.is_file():
        named = f" ({field})" if field else ""
        raise InputError(f"{what}{named} not found: {path}")
    return path


def require_dir(path: Path, what: str, field: str | None = None) -> Path:
    path = Path(path)
    if not path.is_dir():
        named = f" ({field})" if field else ""
        raise InputError(f"{what}{named} is not a directory: {path}")
    return path
