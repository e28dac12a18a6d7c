"""Listwise LLM re-rankers (RankGPT): a sliding window of passages, ranked by a chat model.

The model sees a window of `window` passages (default 20) numbered [1]..[n] and answers with a
permutation "[4] > [2] > ..."; the window slides from the bottom of the first-stage list to the
top by `step` (default 10), so good passages bubble up (Sun et al., 2023: RankGPT; the window
loop as in castorini/rank_llm). Prompts are RankGPT's, in one place below.

Answers are parsed and repaired by a documented rule (RankLLM's response analysis), and every
deviation is counted, never hidden:

- `malformed`: the answer names no identifier at all (prose instead of a list): the window keeps
  its order;
- `repeated`: an identifier named again (only its first mention counts);
- `out_of_range`: an identifier outside [1, n] (ignored);
- `missing`: an identifier never named: appended after the named ones, in their previous order.

`prompt: reasoning` asks instead with R2R's single-call reasoning prompt (keywords, a direct and a
comparative reason per passage, then the ranking, as one JSON answer: `bench.r2r.prompts`), whose answers
are repaired by `bench.r2r.answers` and counted the same way, plus `parse_errors` (answers that were not
JSON of the asked shape: their ranking is read from the identifiers in the text). R2R Table 5 compares
the two prompts.

Windows of different queries are independent, so each round of the slide asks for one window of
every query at once (the backend batches or parallelises them); the LLM backends are the reason
stage's (`openai` for GPT-4o or any OpenAI-compatible server, `vllm`, `local`), with their
response cache, retries and cost accounting: a re-run sends no request.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from bench.data.collection import Run

log = logging.getLogger("bench")

SYSTEM = "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."
_ID = re.compile(r"\[(\d+)\]|(\d+)")


def window_messages(query: str, passages: list[str]) -> list[dict]:
    """RankGPT's conversation: the passages as numbered turns, then the ranking instruction."""
    n = len(passages)
    msgs = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"I will provide you with {n} passages, each indicated by number identifier "
                                        f"[]. \nRank the passages based on their relevance to query: {query}."},
            {"role": "assistant", "content": "Okay, please provide the passages."}]
    for i, p in enumerate(passages, start=1):
        msgs += [{"role": "user", "content": f"[{i}] {p}"}, {"role": "assistant", "content": f"Received passage [{i}]."}]
    msgs.append({"role": "user", "content": f"Search Query: {query}. \nRank the {n} passages above based on their "
                                            f"relevance to the search query. The passages should be listed in descending "
                                            f"order using identifiers. The most relevant passages should be listed "
                                            f"first. The output format should be [] > [], e.g., [1] > [2]. Only response "
                                            f"the ranking results, do not say any word or explain."})
    return msgs


@dataclass
class Parsed:
    order: list[int]  # a permutation of range(n)
    malformed: bool = False
    repeated: int = 0
    missing: int = 0
    out_of_range: int = 0


def parse_permutation(text: str | None, n: int) -> Parsed:
    """The answer as a permutation of the window, repaired by the module's rule (counts kept)."""
    numbers = [int(a or b) for a, b in _ID.findall(text or "")]
    if not numbers:
        return Parsed(list(range(n)), malformed=True, missing=n)
    seen: list[int] = []
    out = {"repeated": 0, "out_of_range": 0}
    for num in numbers:
        if not 1 <= num <= n:
            out["out_of_range"] += 1
        elif num - 1 in seen:
            out["repeated"] += 1
        else:
            seen.append(num - 1)
    missing = [i for i in range(n) if i not in seen]
    return Parsed(seen + missing, missing=len(missing), **out)


def windows(depth: int, window: int, step: int) -> list[tuple[int, int]]:
    """(start, end) of each window, from the bottom of the list to the top: the first ends at `depth`, each
    next one `step` higher, the last starts at 0, so every position is covered for every depth >= 1.

    (rank_llm's loop stops as soon as `start + step == 0`: a list of exactly `window - step` candidates -
    depth 10 with window 20 and step 10 - got no window at all, hence first-stage order and no call.)"""
    out: list[tuple[int, int]] = []
    end = depth
    while end > 0:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            break
        end -= step
    return out


@dataclass
class QueryStats:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: int = 0
    malformed: int = 0
    repeated: int = 0
    missing: int = 0
    out_of_range: int = 0
    failed: int = 0  # requests that ended with an error: their window kept its order
    ids: int = 0  # identifiers the model was asked to rank (every window's size, summed)
    unranked: int = 0  # of those, placed by the repair rule, not by the model (missing ids, failed windows)
    notes: list[str] = field(default_factory=list)
    parse_errors: int = 0  # prompt "reasoning": answers that were not JSON of the asked shape
    # tokens of every answer, cached ones included (a cached reply keeps its counts): what the answers cost
    # when first generated, the same on every re-run (prompt_tokens / completion_tokens count fresh ones only)
    answer_prompt_tokens: int = 0
    answer_completion_tokens: int = 0


def rerank_listwise(cfg, reason_cfg, queries: dict[str, str], items: dict[str, str], first_stage: Run,
                    qids: list[str], cache, answers: dict | None = None) -> tuple[Run, dict[str, QueryStats]]:
    """Sliding-window re-ranking of every query's top `cfg.depth`; returns the run and per-query counts.
    `answers`, when given, receives each window's reply and parsed answer: (qid, start, end) -> (docids of
    the window before it was re-ordered, Reply, parsed answer)."""
    from bench.reason.backends import Request, build_backend, generate_cached

    reasoning = getattr(cfg, "prompt", "rankgpt") == "reasoning"
    if reasoning:
        from bench.r2r.answers import parse_reasoning_answer as parse
        from bench.r2r.prompts import reasoning_messages as messages
    else:
        parse, messages = parse_permutation, window_messages

    lists = {q: [d for d, _ in first_stage.ranked(q, cfg.depth)] for q in qids}
    stats = {q: QueryStats() for q in qids}
    plans = {q: windows(len(lists[q]), cfg.window, cfg.step) for q in qids}
    rounds = max((len(p) for p in plans.values()), default=0)
    backend = build_backend(reason_cfg)
    try:
        for r in range(rounds):
            asks = [(q, *plans[q][r]) for q in qids if r < len(plans[q])]
            requests = [Request(f"{q}/{s}-{e}", messages(queries[q], [_words(items[d], cfg.passage_words)
                                                                       for d in lists[q][s:e]]))
                        for q, s, e in asks]
            replies = generate_cached(backend, requests, cache)
            for (q, s, e), reply in zip(asks, replies):
                st = stats[q]
                st.calls += 1
                st.ids += e - s
                st.cached += int(reply.cached)
                st.answer_prompt_tokens += reply.prompt_tokens
                st.answer_completion_tokens += reply.completion_tokens
                if not reply.cached:
                    st.prompt_tokens += reply.prompt_tokens
                    st.completion_tokens += reply.completion_tokens
                    st.seconds += reply.seconds
                if reply.status == "error":
                    st.failed += 1
                    st.unranked += e - s
                    st.notes.append(f"window {s + 1}-{e}: {reply.message}; kept its order")
                    continue
                parsed = parse(reply.text, e - s)
                st.parse_errors += int(bool(getattr(parsed, "parse_error", "")))
                st.malformed += int(parsed.malformed)
                st.repeated += parsed.repeated
                st.missing += parsed.missing
                st.unranked += parsed.missing
                st.out_of_range += parsed.out_of_range
                window_docs = lists[q][s:e]
                if answers is not None:
                    answers[(q, s, e)] = (list(window_docs), reply, parsed)
                lists[q][s:e] = [window_docs[i] for i in parsed.order]
    finally:
        backend.close()
    run = {}
    for q in qids:
        ranked = lists[q]
        run[q] = {d: float(len(ranked) - i) for i, d in enumerate(ranked)}
        for i, (d, _) in enumerate(first_stage.ranked(q)[cfg.depth:]):  # below the window, first-stage order
            run[q][d] = -1.0 - i
    return Run(cfg.name, run), stats


def _words(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n])
