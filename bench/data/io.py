"""Strict readers for the file formats collections come in. Every problem names file and line.

All text readers go through `iter_lines`, which decodes each line as UTF-8 on its own, so a
byte that is not UTF-8 is reported with the line it is on instead of a traceback.
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bench.errors import InputError, require_file


def iter_lines(path: Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a UTF-8 text file (optionally .gz); one-line errors."""
    path = require_file(path, what)
    try:
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror or e}", source=path) from None
    with raw as f:
        lineno = 0
        try:
            for lineno, data in enumerate(f, start=1):
                if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]  # a UTF-8 byte-order mark
                try:
                    yield lineno, data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"not valid UTF-8 (byte {data[e.start]:#04x} at column {e.start + 1})",
                                     source=path, line=lineno) from None
        except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz
            raise InputError(f"cannot read {what} after line {lineno}: {e}", source=path) from None


def read_text(path: Path, what: str = "file") -> str:
    """A whole UTF-8 file (for JSON documents); invalid bytes are reported with their line."""
    return "".join(text for _, text in iter_lines(path, what))


def read_json(path: Path, what: str = "JSON file") -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"bad JSON ({e.msg} at column {e.colno})", source=path, line=e.lineno) from None


def read_jsonl(path: Path, what: str = "JSONL file") -> Iterator[tuple[int, dict]]:
    for lineno, line in iter_lines(path, what):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"bad JSON line ({e.msg} at column {e.colno})", source=path, line=lineno) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object per line", source=path, line=lineno)
        yield lineno, row


def require_keys(row: dict, keys: tuple[str, ...], path: Path, lineno: int) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise InputError(f"missing field {missing[0]!r}", source=path, line=lineno)


def id_field(row: dict, key: str, path: Path | str, lineno: int | None) -> str:
    """An id: a non-empty string or an integer (never null, a float, a list or an object)."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"field {key!r} must be a string or an integer id, got {json.dumps(value)}",
                         source=path, line=lineno)
    if not str(value).strip():
        raise InputError(f"field {key!r} is empty", source=path, line=lineno)
    return str(value)


def text_field(row: dict, key: str, path: Path | str, lineno: int | None, *, required: bool = True,
               default: str = "") -> str:
    """A text field: a string (null allowed only for optional fields); non-empty when required."""
    value = row.get(key)
    if value is None and not required:
        return default
    if not isinstance(value, str):
        raise InputError(f"field {key!r} must be a string, got {json.dumps(value)[:40]}", source=path, line=lineno)
    if required and not value.strip():
        raise InputError(f"field {key!r} is empty", source=path, line=lineno)
    return value


@dataclass
class QrelsFile:
    """Judgements with the file and line each came from (for errors that name the line)."""

    path: Path
    qrels: dict[str, dict[str, int]]
    lines: dict[tuple[str, str], int] = field(default_factory=dict)

    def check_ids(self, queries, corpus, *, partial_corpus: bool = False) -> None:
        """Every judged query must exist; every judged document too (unless the corpus is partial)."""
        for (qid, docid), lineno in self.lines.items():
            if qid not in queries:
                raise InputError(f"qrels name unknown query {qid!r}", source=self.path, line=lineno)
            if not partial_corpus and docid not in corpus:
                raise InputError(f"qrels for query {qid!r} name unknown document {docid!r}", source=self.path,
                                 line=lineno)


def read_qrels(path: Path, *, trec: bool | None = None) -> QrelsFile:
    """Read BEIR TSV qrels (`query-id corpus-id score`, header) or TREC qrels (`qid 0 docid rel`)."""
    from bench.data.ids import safe_id

    qrels: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    first = True
    for lineno, line in iter_lines(path, "qrels file"):
        if not line.strip():
            continue
        cols = line.split()
        if first and cols and (cols[0] in ("query-id", "qid", "query_id")
                               or (not trec and not cols[-1].lstrip("-").isdigit())):
            first = False
            continue  # BEIR header
        first = False
        expected = 4 if (trec or (trec is None and len(cols) == 4)) else 3
        if len(cols) != expected:
            raise InputError(f"qrels line has {len(cols)} columns, expected 3 (BEIR: query-id corpus-id score) "
                             f"or 4 (TREC: qid iter docid rel)", source=path, line=lineno)
        qid, docid, rel = (cols[0], cols[2], cols[3]) if expected == 4 else cols
        try:
            grade = int(rel)
        except ValueError:
            raise InputError(f"relevance {rel!r} is not an integer", source=path, line=lineno) from None
        qid, docid = safe_id(qid), safe_id(docid)
        if docid in qrels.setdefault(qid, {}):
            raise InputError(f"duplicate judgement for query {qid!r} document {docid!r}", source=path,
                             line=lineno)
        qrels[qid][docid] = grade
        lines[(qid, docid)] = lineno
    if not qrels:
        raise InputError("qrels file has no judgements", source=path)
    return QrelsFile(Path(path), qrels, lines)


def read_topics_tsv(path: Path) -> dict[str, str]:
    topics = {}
    for lineno, line in iter_lines(path, "topics file"):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 2:
            raise InputError(f"topics line has {len(cols)} tab-separated columns, expected 2 (qid, text)",
                             source=path, line=lineno)
        if not cols[1].strip():
            raise InputError(f"topic {cols[0]!r} has an empty text", source=path, line=lineno)
        topics[cols[0]] = cols[1]
    return topics


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8 as is (the artifacts' JSONL files)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
