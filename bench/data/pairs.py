"""Training data builders: pointwise graded items and the paper's preference pairs.

A query's training list is its **judged** items (the qrels; only documents present in the
corpus). The paper's pairs are its top-5 x bottom-5 by grade:

- items are ordered by grade (highest first), ties by first-stage rank, then by id;
- `top` = the first min(5, ceil(n / 2)) items, `bottom` = the last min(5, n - |top|) items, so the
  two never overlap on short lists (6-9 items) and every item is in at most one of them;
- a pair (chosen, rejected) is kept only when the chosen grade is strictly higher.

Unjudged documents never enter the lists unless the training config asks for negatives
(`train.negatives: first-stage`): then a query's unjudged first-stage candidates (within
`train.depth`) join as grade-0 items, each marked `judged=False`, and the counts are reported.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TypedDict

from bench.data.collection import Collection, Run

TOP, BOTTOM = 5, 5


@dataclass(frozen=True)
class GradedItem:
    docid: str
    grade: int
    judged: bool


@dataclass(frozen=True)
class PointwiseItem:
    qid: str
    docid: str
    query: str
    text: str
    grade: int
    relevant: bool  # grade >= half the scale: the label SFT teaches as the relevance token
    judged: bool = True


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
    rejected_judged: bool = True


def graded_lists(col: Collection, first_stage: Run, qids: list[str], depth: int,
                 negatives: str = "none") -> dict[str, list[GradedItem]]:
    """Each query's judged items (plus unjudged first-stage negatives when asked), best first."""
    lists = {}
    for qid in qids:
        judged = {d: g for d, g in col.qrels.get(qid, {}).items() if d in col.corpus}
        ranked = [d for d, _ in first_stage.ranked(qid, depth)] if first_stage is not None else []
        rank = {d: i for i, d in enumerate(ranked)}
        items = [GradedItem(d, g, True) for d, g in judged.items()]
        if negatives == "first-stage":
            items += [GradedItem(d, 0, False) for d in ranked if d not in judged]
        items.sort(key=lambda it: (-it.grade, rank.get(it.docid, len(rank)), it.docid))
        lists[qid] = items
    return lists


def relevant_threshold(col: Collection) -> int:
    return max(1, (col.grades_max + 1) // 2)


def pointwise_items(col: Collection, first_stage: Run, qids: list[str], depth: int,
                    negatives: str = "none") -> list[PointwiseItem]:
    threshold = relevant_threshold(col)
    out = []
    for qid, items in graded_lists(col, first_stage, qids, depth, negatives).items():
        for it in items:
            out.append(PointwiseItem(qid, it.docid, col.queries[qid], col.corpus[it.docid].full_text(), it.grade,
                                     it.grade >= threshold, it.judged))
    return out


def top_bottom(items: list[GradedItem], top: int = TOP, bottom: int = BOTTOM) -> tuple[list, list]:
    """The paper's top-k and bottom-k of a best-first list, never overlapping."""
    n_top = min(top, math.ceil(len(items) / 2))
    n_bottom = min(bottom, len(items) - n_top)
    return items[:n_top], items[len(items) - n_bottom:] if n_bottom else []


def preference_pairs(col: Collection, first_stage: Run, qids: list[str], depth: int, top: int = TOP,
                     bottom: int = BOTTOM, negatives: str = "none") -> list[PreferencePair]:
    out = []
    for qid, items in graded_lists(col, first_stage, qids, depth, negatives).items():
        best, worst = top_bottom(items, top, bottom)
        for c in best:
            for r in worst:
                if c.grade > r.grade:
                    out.append(PreferencePair(qid, col.queries[qid], c.docid, col.corpus[c.docid].full_text(),
                                              c.grade, r.docid, col.corpus[r.docid].full_text(), r.grade,
                                              r.judged))
    return out


def as_records(items) -> list[dict]:
    return [asdict(x) for x in items]


class TrainingData(TypedDict, total=False):
    """A training cell's data, as it travels to its Ray Train worker (records of the dataclasses above)."""

    train_items: list[dict]  # PointwiseItem records of the train split (SFT, PPO, GRPO, RLOO)
    train_pairs: list[dict]  # PreferencePair records of the train split (RM, DPO)
    valid_pairs: list[dict]  # PreferencePair records of the valid split: held-out pairwise accuracy and loss
    valid_items: list[dict]  # PointwiseItem records of the valid split: held-out top-1 accuracy
    r2r_lists: list[dict]  # bench.r2r.teacher.TeacherList records (R2R students)
    r2r_texts: dict[str, str]  # docid -> text of the documents in those lists
    r2r_reference: list[dict]  # {qid, docid, query, text, teacher}: R2R Table 3's references
