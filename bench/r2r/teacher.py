"""The teacher step: per query, a ranking of its top candidates, direct-relevance reasons for each
candidate and comparative reasons for consecutive pairs of the teacher's ranking.

Runs through the reason stage's backends (`bench.reason.backends`): responses cached (a re-run sends
no request), retried, costed and counted. A ranking the teacher fails to give (no identifiers, an
error) falls back to the first-stage order and says so; a missing reason is counted, never fatal.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from bench.data.collection import Run
from bench.r2r import prompts
from bench.r2r.config import TeacherConfig

log = logging.getLogger("bench")


@dataclass
class TeacherList:
    """What the teacher said about one query (the R2R training example)."""

    qid: str
    query: str
    docids: list[str]  # the candidates, in the teacher's order (best first)
    ranking: str  # "teacher" or "fallback: <why>" (then the first-stage order)
    direct: dict[str, str] = field(default_factory=dict)  # docid -> direct-relevance reason
    compare: list[dict] = field(default_factory=list)  # {higher, lower, text}: consecutive pairs
    counts: dict = field(default_factory=dict)


def teach(cfg: TeacherConfig, queries: dict[str, str], items: dict[str, str], first_stage: Run, qids: list[str],
          cache) -> tuple[list[TeacherList], dict]:
    from bench.config import ListwiseSystem
    from bench.reason.backends import Request, build_backend, cost_usd, generate_cached
    from bench.rerank.listwise import rerank_listwise

    from bench.reason.config import LLMEndpoint

    rcfg = cfg.reason_config()
    ranker = ListwiseSystem(name="teacher", kind="listwise", window=cfg.depth, step=cfg.depth, depth=cfg.depth,
                            passage_words=cfg.passage_words, **cfg.model_dump(include=set(LLMEndpoint.model_fields)))
    run, stats = rerank_listwise(ranker, rcfg, queries, items, first_stage, qids, cache)
    lists = []
    for q in qids:
        st = stats[q]
        order = [d for d, _ in run.ranked(q, cfg.depth)]
        why = ("the teacher's answer named no passage" if st.malformed else
               f"the ranking request failed ({'; '.join(st.notes)})" if st.failed else "")
        lists.append(TeacherList(q, queries[q], order if not why else [d for d, _ in first_stage.ranked(q, cfg.depth)],
                                 f"fallback: {why}; first-stage order kept" if why else "teacher",
                                 counts={k: getattr(st, k) for k in ("repeated", "missing", "out_of_range")}))
        if why:
            log.debug("teacher: query %s: %s; its list keeps the first-stage order", q, why)
    clip = lambda d: prompts.clip_words(items[d], cfg.passage_words)  # noqa: E731
    requests, slots = [], []
    for tl in lists:
        for d in tl.docids:
            requests.append(Request(f"{tl.qid}/direct/{d}", prompts.messages(prompts.direct_prompt(tl.query, clip(d)))))
            slots.append((tl, "direct", d, None))
        for hi, lo in zip(tl.docids, tl.docids[1:]):
            requests.append(Request(f"{tl.qid}/compare/{hi}>{lo}",
                                    prompts.messages(prompts.compare_prompt(tl.query, clip(hi), clip(lo)))))
            slots.append((tl, "compare", hi, lo))
    backend = build_backend(rcfg)
    try:
        replies = generate_cached(backend, requests, cache)
    finally:
        backend.close()
    failed = {"direct": 0, "compare": 0}
    for (tl, kind, hi, lo), reply in zip(slots, replies):
        if reply.status != "ok":
            failed[kind] += 1
            continue
        if kind == "direct":
            tl.direct[hi] = reply.text
        else:
            tl.compare.append({"higher": hi, "lower": lo, "text": reply.text})
    fallbacks = [tl.qid for tl in lists if tl.ranking != "teacher"]
    if fallbacks:
        log.warning("teacher: %d of %d rankings fell back to the first-stage order (e.g. query %s: %s)",
                    len(fallbacks), len(lists), fallbacks[0], next(tl.ranking for tl in lists if tl.qid == fallbacks[0]))
    fresh = [r for r in replies if not r.cached]
    rank_tokens = [sum(getattr(st, k) for st in stats.values()) for k in ("prompt_tokens", "completion_tokens")]
    prompt_tokens = sum(r.prompt_tokens for r in fresh) + rank_tokens[0]
    completion_tokens = sum(r.completion_tokens for r in fresh) + rank_tokens[1]
    summary = {"queries": len(lists), "fallbacks": sum(tl.ranking != "teacher" for tl in lists),
               "ranking_calls": sum(st.calls for st in stats.values()),
               "ranking_malformed": sum(st.malformed for st in stats.values()),
               "reason_prompts": len(requests), "reasons_ok": sum(r.status == "ok" for r in replies),
               "reasons_failed": failed, "cached": sum(r.cached for r in replies) + sum(st.cached for st in stats.values()),
               "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
               "cost_usd": cost_usd(rcfg, prompt_tokens, completion_tokens)}
    return lists, summary


def as_records(lists: list[TeacherList]) -> list[dict]:
    return [asdict(tl) for tl in lists]
