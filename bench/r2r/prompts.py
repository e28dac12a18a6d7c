"""Every prompt of the R2R flow, in one place.

- Teacher ranking: RankGPT's listwise conversation (`bench.rerank.listwise.window_messages`) over
  the query's top `r2r.teacher.depth` candidates, one window.
- Direct-relevance reasoning (teacher, and the student's generation target): how one document
  answers the query.
- Comparative reasoning: why the document the teacher ranked higher beats the next one.
The student is asked the same two questions (`direct_prompt`, `compare_prompt`) to write its own
reasons; R2R Table 3 scores them against the teacher's.
"""
from __future__ import annotations

SYSTEM = "You are an expert search relevance assessor who explains ranking decisions briefly and concretely."


def direct_prompt(query: str, document: str) -> str:
    return (f"Query: {query}\nDocument: {document}\n"
            "In two sentences, explain how this document addresses the query (or why it does not).")


def compare_prompt(query: str, higher: str, lower: str) -> str:
    return (f"Query: {query}\nDocument A: {higher}\nDocument B: {lower}\n"
            "Document A was ranked above Document B. In two sentences, explain why A is more relevant to the query "
            "than B.")


def messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def clip_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])
