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


# ---------------------------------------------------------------------------------------------------------------
# R2R's single-call teacher prompt (R2R appendix F, in substance; worded here): one JSON answer per query with the
# query's keywords, the ranking, and for each passage a direct-relevance reason and a comparative reason (why it
# ranks above the next passage of the ranking). It is RankGPT's conversation (the passages as numbered turns) with
# a reasoning instruction first and a JSON answer format last. `bench.r2r.answers` parses and repairs the answer.
REASONING_SYSTEM = ("You are RankGPT, an intelligent assistant that ranks passages by their relevance to a query and "
                    "explains each ranking decision.")
JSON_SHAPE = ('{"keywords": ["<keyword>", ...], "ranked_passages": [{"identifier": <int>, "direct_reason": '
              '"<how this passage addresses the query>", "comparative_reason": "<why this passage ranks above the '
              'next passage of your list>"}, ...]}')


def reasoning_messages(query: str, passages: list[str]) -> list[dict]:
    """The single-call reasoning prompt over a window of passages (numbered [1]..[n])."""
    n = len(passages)
    msgs = [{"role": "system", "content": REASONING_SYSTEM},
            {"role": "user", "content": (
                f"I will give you {n} passages, each marked with a number identifier [], for the query: {query}.\n"
                "Read them one by one. For each passage, reason about how directly it answers the query: which "
                "parts of it address the query's keywords, and what it lacks (direct relevance). Then compare the "
                "passages with each other: which gives more complete, specific and accurate information for the "
                "query, and why (comparative relevance).")},
            {"role": "assistant", "content": "Okay, please provide the passages."}]
    for i, p in enumerate(passages, start=1):
        msgs += [{"role": "user", "content": f"[{i}] {p}"}, {"role": "assistant", "content": f"Received passage [{i}]."}]
    msgs.append({"role": "user", "content": (
        f"Search query: {query}.\nFirst extract the query's keywords. Then rank the {n} passages above from the most "
        f"to the least relevant to the query. Answer with one JSON object and nothing else, in this format:\n"
        f"{JSON_SHAPE}\nList every identifier exactly once, the most relevant first. Give each passage a short, "
        f"concrete direct_reason that names the parts of the passage that decided its rank, and a comparative_reason "
        f"that says why it is more relevant than the passage listed right after it (empty for the last one).")})
    return msgs
