"""The one collection type every loader returns, and the run type every ranking stage returns."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.artifacts import file_sha256
from bench.errors import InputError


@dataclass
class Document:
    text: str
    title: str = ""
    url: str = ""

    def full_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


# qid -> docid -> value
Qrels = dict[str, dict[str, int]]
Scores = dict[str, dict[str, float]]


def trec_order(scores: dict[str, float]) -> list[tuple[str, float]]:
    """(docid, score), best first, ties broken as trec_eval (and so pytrec_eval / ir-measures) breaks them: the
    larger docid first. Every ranking the harness uses itself (the top-k re-ranked, explained, shown) is then
    the one that is evaluated."""
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


@dataclass
class Run:
    """A ranking: qid -> {docid: score}; higher is better. Saved as a TREC run file."""

    name: str
    scores: Scores
    # where a run read from a file came from (for error messages); not part of its identity
    source: Path | None = field(default=None, repr=False, compare=False)
    source_lines: dict | None = field(default=None, repr=False, compare=False)

    def ranked(self, qid: str, depth: int | None = None) -> list[tuple[str, float]]:
        items = trec_order(self.scores.get(qid, {}))
        return items[:depth] if depth else items

    def save_trec(self, path: Path) -> Path:
        tag = "_".join(self.name.split()) or "run"
        with open(path, "w", encoding="utf-8") as f:
            for qid in sorted(self.scores):
                for rank, (docid, score) in enumerate(self.ranked(qid), start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")  # all digits: no new ties
        return Path(path)

    @classmethod
    def load_trec(cls, path: Path, name: str | None = None) -> "Run":
        """Read a TREC run file (`qid Q0 docid rank score tag`); one-line errors naming file and line.

        The line each (qid, docid) came from is kept in `source_lines`, so that checks against a
        collection (`check_ids`) can name it too.
        """
        from bench.data.ids import safe_id
        from bench.data.io import iter_lines

        path = Path(path)
        scores: Scores = {}
        lines: dict[tuple[str, str], int] = {}
        tag = None
        for lineno, line in iter_lines(path, "run file"):
            if not line.strip():
                continue
            cols = line.split()
            if len(cols) != 6:
                raise InputError(f"run line has {len(cols)} columns, expected 6 (qid Q0 docid rank score tag)",
                                 source=path, line=lineno)
            qid, _, docid, _, score, tag = cols
            qid, docid = safe_id(qid), safe_id(docid)
            try:
                value = float(score)
            except ValueError:
                raise InputError(f"run score {score!r} is not a number", source=path, line=lineno) from None
            if not math.isfinite(value):
                raise InputError(f"run score {score!r} is not a finite number", source=path, line=lineno)
            if docid in scores.setdefault(qid, {}):
                raise InputError(f"duplicate document {docid!r} for query {qid!r} in run", source=path,
                                 line=lineno)
            scores[qid][docid] = value
            lines[(qid, docid)] = lineno
        if not scores:
            raise InputError("run file is empty", source=path)
        run = cls(name=name or tag or path.stem, scores=scores)
        run.source, run.source_lines = path, lines
        return run

    def check_ids(self, queries, corpus, what: str = "run") -> None:
        """Every (query, document) of the run must exist in the collection; errors name the run file's line."""
        for qid, docs in self.scores.items():
            for docid in docs:
                problem = (f"unknown query {qid!r}" if qid not in queries
                           else f"unknown document {docid!r} (query {qid!r})" if docid not in corpus else None)
                if problem:
                    line = self.source_lines.get((qid, docid)) if self.source_lines else None
                    raise InputError(f"{what} names {problem}, which is not in the collection",
                                     source=self.source, line=line)


@dataclass
class Collection:
    """Queries, corpus and qrels, plus optional first-stage candidates, splits and query answers.

    `grades_max` records the top of the relevance scale (9 for the ENVRI-style demo, 3 for
    TREC DL, 1 for binary BEIR qrels) so stages can turn grades into labels consistently.
    """

    name: str
    queries: dict[str, str]
    corpus: dict[str, Document]
    qrels: Qrels
    candidates: Run | None = None
    splits: dict[str, list[str]] | None = None
    excluded: dict[str, list[str]] = field(default_factory=dict)  # qid -> docids never to rank (BRIGHT)
    grades_max: int = 1
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------ consistency
    def validate(self, source: str) -> "Collection":
        if not self.corpus:
            raise InputError("corpus is empty", source=source)
        if not self.queries:
            raise InputError("no queries", source=source)
        for qid, docs in self.qrels.items():
            if qid not in self.queries:
                raise InputError(f"qrels name unknown query {qid!r}", source=source)
            for docid in docs:
                # Candidate-list collections (TREC DL top-100) hold only the passages they rank.
                if docid not in self.corpus and not self.meta.get("partial_corpus"):
                    raise InputError(f"qrels for query {qid!r} name unknown document {docid!r}", source=source)
        if self.candidates is not None:
            for qid, docs in self.candidates.scores.items():
                if qid not in self.queries:
                    raise InputError(f"candidate list names unknown query {qid!r}", source=source)
                for docid in docs:
                    if docid not in self.corpus:
                        raise InputError(f"candidate list for query {qid!r} names unknown document {docid!r}",
                                         source=source)
        return self

    def subset(self, qids: list[str]) -> "Collection":
        keep = [q for q in qids if q in self.queries]
        cands = None
        if self.candidates is not None:
            cands = Run(self.candidates.name, {q: self.candidates.scores[q] for q in keep if q in self.candidates.scores})
        kept = set(keep)
        splits = {s: [q for q in qs if q in kept] for s, qs in self.splits.items()} if self.splits else None
        return Collection(self.name, {q: self.queries[q] for q in keep}, self.corpus,
                          {q: self.qrels[q] for q in keep if q in self.qrels}, cands, splits,
                          {q: self.excluded[q] for q in keep if q in self.excluded}, self.grades_max, self.meta)

    # ------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        d = Path(directory)
        with open(d / "queries.jsonl", "w", encoding="utf-8") as f:
            for qid, text in self.queries.items():
                f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
        with open(d / "corpus.jsonl", "w", encoding="utf-8") as f:
            for docid, doc in self.corpus.items():
                f.write(json.dumps({"_id": docid, "title": doc.title, "text": doc.text, "url": doc.url},
                                   ensure_ascii=False) + "\n")
        with open(d / "qrels.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["query-id", "corpus-id", "score"])
            for qid, docs in self.qrels.items():
                for docid, rel in docs.items():
                    w.writerow([qid, docid, rel])
        if self.candidates is not None:
            self.candidates.save_trec(d / "candidates.trec")
        extra = {"name": self.name, "splits": self.splits, "excluded": self.excluded,
                 "grades_max": self.grades_max, "meta": self.meta,
                 "candidates_name": self.candidates.name if self.candidates else None}
        (d / "collection.json").write_text(json.dumps(extra, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "Collection":
        d = Path(directory)
        extra = json.loads((d / "collection.json").read_text())
        queries = {}
        with open(d / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                queries[row["_id"]] = row["text"]
        corpus = {}
        with open(d / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                corpus[row["_id"]] = Document(row["text"], row.get("title", ""), row.get("url", ""))
        qrels: Qrels = {}
        with open(d / "qrels.tsv", encoding="utf-8") as f:
            next(f)
            for line in f:
                qid, docid, rel = line.rstrip("\n").split("\t")
                qrels.setdefault(qid, {})[docid] = int(rel)
        cands = None
        if (d / "candidates.trec").exists():
            cands = Run.load_trec(d / "candidates.trec", name=extra.get("candidates_name"))
        return cls(extra["name"], queries, corpus, qrels, cands, extra.get("splits"), extra.get("excluded") or {},
                   extra.get("grades_max", 1), extra.get("meta") or {})

    def checksum(self, directory: Path) -> str:
        return file_sha256(Path(directory) / "qrels.tsv")
