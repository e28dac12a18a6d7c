"""Training data builders: pointwise graded items and the paper's preference pairs.

Each query's item list is its first-stage candidates (the items a re-ranker must order) with
grades from the qrels, unjudged items counting as 0. Pairs follow the paper: the 5
highest-graded items x the 5 lowest-graded items = up to 25 (chosen, rejected) pairs per
query, keeping only pairs whose grades differ.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.data.collection import Collection, Run


@dataclass(frozen=True)
class PointwiseItem:
    qid: str
    docid: str
    query: str
    text: str
    grade: int
    relevant: bool  # grade >= half the scale: the label SFT teaches as the relevance token


@dataclass(frozen=True)
class PreferencePair:
    qid: str
    query: str
    chosen_docid: str
    chosen: str
    chosen_grade: int
    rejected_docid: str
    rejected: str
    rejected_grade: int


def graded_lists(col: Collection, first_stage: Run, qids: list[str], depth: int) -> dict[str, list[tuple[str, int]]]:
    lists = {}
    for qid in qids:
        judged = col.qrels.get(qid, {})
        ranked = [d for d, _ in first_stage.ranked(qid, depth)]
        # Judged items missing from the candidates still teach the model: add them.
        for d in judged:
            if d not in ranked and d in col.corpus:
                ranked.append(d)
        lists[qid] = [(d, judged.get(d, 0)) for d in ranked]
    return lists


def relevant_threshold(col: Collection) -> int:
    return max(1, (col.grades_max + 1) // 2)


def pointwise_items(col: Collection, first_stage: Run, qids: list[str], depth: int) -> list[PointwiseItem]:
    threshold = relevant_threshold(col)
    out = []
    for qid, items in graded_lists(col, first_stage, qids, depth).items():
        for docid, grade in items:
            out.append(PointwiseItem(qid, docid, col.queries[qid], col.corpus[docid].full_text(), grade,
                                     grade >= threshold))
    return out


def preference_pairs(col: Collection, first_stage: Run, qids: list[str], depth: int,
                     top: int = 5, bottom: int = 5) -> list[PreferencePair]:
    out = []
    for qid, items in graded_lists(col, first_stage, qids, depth).items():
        ordered = sorted(items, key=lambda x: (-x[1], x[0]))
        best, worst = ordered[:top], ordered[-bottom:] if len(ordered) > top else []
        for cd, cg in best:
            for rd, rg in worst:
                if cg > rg:
                    out.append(PreferencePair(qid, col.queries[qid], cd, col.corpus[cd].full_text(), cg,
                                              rd, col.corpus[rd].full_text(), rg))
    return out


def as_records(items) -> list[dict]:
    return [asdict(x) for x in items]
