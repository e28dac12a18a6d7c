"""Strict readers for the file formats collections come in. Every problem names file and line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from bench.errors import InputError, require_file


def open_text(path: Path):
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(path: Path, what: str = "JSONL file") -> Iterator[tuple[int, dict]]:
    require_file(path, what)
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
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


def read_qrels(path: Path, *, trec: bool | None = None) -> dict[str, dict[str, int]]:
    """Read BEIR TSV qrels (`query-id corpus-id score`, header) or TREC qrels (`qid 0 docid rel`)."""
    require_file(path, "qrels file")
    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.split()
            if lineno == 1 and cols and (cols[0] in ("query-id", "qid", "query_id")
                                         or (not trec and not cols[-1].lstrip("-").isdigit())):
                continue  # BEIR header
            expected = 4 if (trec or (trec is None and len(cols) == 4)) else 3
            if len(cols) != expected:
                raise InputError(f"qrels line has {len(cols)} columns, expected 3 (BEIR: query-id corpus-id score) "
                                 f"or 4 (TREC: qid iter docid rel)", source=path, line=lineno)
            qid, docid, rel = (cols[0], cols[2], cols[3]) if expected == 4 else cols
            try:
                grade = int(rel)
            except ValueError:
                raise InputError(f"relevance {rel!r} is not an integer", source=path, line=lineno) from None
            if docid in qrels.setdefault(qid, {}):
                raise InputError(f"duplicate judgement for query {qid!r} document {docid!r}", source=path,
                                 line=lineno)
            qrels[qid][docid] = grade
    if not qrels:
        raise InputError("qrels file has no judgements", source=path)
    return qrels


def read_topics_tsv(path: Path) -> dict[str, str]:
    require_file(path, "topics file")
    topics = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2:
                raise InputError(f"topics line has {len(cols)} tab-separated columns, expected 2 (qid, text)",
                                 source=path, line=lineno)
            topics[cols[0]] = cols[1]
    return topics
