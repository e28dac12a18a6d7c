"""The teacher step: per query, a ranking of its top candidates, direct-relevance reasons for each
candidate and comparative reasons for consecutive pairs of the teacher's ranking.

Two prompts (`r2r.teacher.prompt`):
- `json` (default, R2R's appendix F in substance): ONE call per query with R2R's single-call reasoning
  prompt; the JSON answer gives the query's keywords, the ranking, and per passage a direct and a
  comparative reason. Answers are repaired and counted by `bench.r2r.answers` (parse errors, repeated /
  missing / out-of-range identifiers, missing reasons). A query whose answer is not JSON of the asked
  shape, or whose request failed, gets its reasons from the separate prompts (`json_fallback: separate`,
  counted) or none (`none`).
- `separate` (before): a RankGPT ranking call, then one call per direct and per comparative reason.

Runs through the reason stage's backends (`bench.reason.backends`): responses cached (a re-run sends
no request), retried, costed and counted. A ranking the teacher fails to give (no identifiers, an
error) falls back to the first-stage order and says so; a missing reason is counted, never fatal. The
summary has the tokens of each reasoning type (`usage_by_type`: ranking, direct, comparative), which
R2R's per-type cost table is written from.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from bench.data.collection import Run
from bench.r2r import prompts
from bench.r2r.config import TeacherConfig

log = logging.getLogger("bench")

REASON_TYPES = ("ranking", "direct", "comparative")


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
    keywords: list[str] = field(default_factory=list)  # prompt json: the query's keywords, as the teacher saw them


def _usage() -> dict:
    return {t: {"calls": 0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "estimated": False} for t in REASON_TYPES}


def _add(usage: dict, kind: str, reply, prompt_tokens: float | None = None, completion_tokens: float | None = None,
         calls: int = 1, estimated: bool = False) -> None:
    u = usage[kind]
    u["calls"] += calls
    u["prompt_tokens"] += reply.prompt_tokens if prompt_tokens is None else prompt_tokens
    u["completion_tokens"] += reply.completion_tokens if completion_tokens is None else completion_tokens
    u["estimated"] = u["estimated"] or estimated


def _ranker(cfg: TeacherConfig, prompt: str, max_new_tokens: int):
    from bench.config import ListwiseSystem
    from bench.reason.config import LLMEndpoint

    endpoint = cfg.model_dump(include=set(LLMEndpoint.model_fields))
    endpoint["max_new_tokens"] = max_new_tokens
    return ListwiseSystem(name="teacher", kind="listwise", window=cfg.depth, step=cfg.depth, depth=cfg.depth,
                          passage_words=cfg.passage_words, prompt=prompt, **endpoint)


def _reason_requests(tl: TeacherList, clip) -> tuple[list, list]:
    """The separate prompts of one list: a direct reason per document, a comparative one per consecutive pair."""
    from bench.reason.backends import Request

    requests, slots = [], []
    for d in tl.docids:
        requests.append(Request(f"{tl.qid}/direct/{d}", prompts.messages(prompts.direct_prompt(tl.query, clip(d)))))
        slots.append((tl, "direct", d, None))
    for hi, lo in zip(tl.docids, tl.docids[1:]):
        requests.append(Request(f"{tl.qid}/compare/{hi}>{lo}",
                                prompts.messages(prompts.compare_prompt(tl.query, clip(hi), clip(lo)))))
        slots.append((tl, "compare", hi, lo))
    return requests, slots


def _ask_reasons(rcfg, requests: list, slots: list, cache, usage: dict) -> dict:
    """Generate (or read from the cache) the separate reasons; fill the lists; failures per kind."""
    from bench.reason.backends import build_backend, generate_cached

    failed = {"direct": 0, "compare": 0}
    if not requests:
        return {"failed": failed, "ok": 0, "cached": 0, "fresh": []}
    backend = build_backend(rcfg)
    try:
        replies = generate_cached(backend, requests, cache)
    finally:
        backend.close()
    for (tl, kind, hi, lo), reply in zip(slots, replies):
        _add(usage, "direct" if kind == "direct" else "comparative", reply)
        if reply.status != "ok":
            failed[kind] += 1
            continue
        if kind == "direct":
            tl.direct[hi] = reply.text
        else:
            tl.compare.append({"higher": hi, "lower": lo, "text": reply.text})
    return {"failed": failed, "ok": sum(r.status == "ok" for r in replies), "cached": sum(r.cached for r in replies),
            "fresh": [r for r in replies if not r.cached]}


def teach(cfg: TeacherConfig, queries: dict[str, str], items: dict[str, str], first_stage: Run, qids: list[str],
          cache) -> tuple[list[TeacherList], dict]:
    from bench.reason.backends import cost_usd
    from bench.rerank.listwise import rerank_listwise

    rcfg = cfg.reason_config()
    usage = _usage()
    answers: dict = {}
    if cfg.prompt == "json":
        ranker = _ranker(cfg, "reasoning", cfg.json_max_new_tokens)
        run, stats = rerank_listwise(ranker, ranker.reason_config(), queries, items, first_stage, qids, cache, answers)
    else:
        ranker = _ranker(cfg, "rankgpt", cfg.max_new_tokens)
        run, stats = rerank_listwise(ranker, rcfg, queries, items, first_stage, qids, cache)
    lists = []
    for q in qids:
        st = stats[q]
        order = [d for d, _ in run.ranked(q, cfg.depth)]
        why = ("the teacher's answer named no passage" if st.malformed else
               f"the ranking request failed ({'; '.join(st.notes)})" if st.failed else "")
        lists.append(TeacherList(q, queries[q], order if not why else [d for d, _ in first_stage.ranked(q, cfg.depth)],
                                 f"fallback: {why}; first-stage order kept" if why else "teacher",
                                 counts={k: getattr(st, k) for k in ("repeated", "missing", "out_of_range",
                                                                     "parse_errors")}))
        if why:
            log.debug("teacher: query %s: %s; its list keeps the first-stage order", q, why)
    clip = lambda d: prompts.clip_words(items[d], cfg.passage_words)  # noqa: E731
    summary_json: dict = {}
    if cfg.prompt == "json":
        requests, slots, parse_errors, missing_reasons, fallback_queries = [], [], 0, 0, []
        for tl in lists:
            got = answers.get((tl.qid, 0, len(tl.docids)))  # one window per query: its top `depth` (or fewer)
            if got is not None:
                window, reply, parsed = got
                # the shared prompt and the JSON's own tokens count as ranking; the reasons' share of the answer's
                # tokens is estimated from their share of its characters (one call: no exact split exists)
                chars = max(1, len(reply.text or ""))
                d_chars = sum(len(t) for t in parsed.direct.values()) if not parsed.parse_error else 0
                c_chars = sum(len(t) for t in parsed.comparative.values()) if not parsed.parse_error else 0
                out = reply.completion_tokens
                _add(usage, "ranking", reply, completion_tokens=out * (1 - (d_chars + c_chars) / chars),
                     estimated=bool(d_chars or c_chars))
                _add(usage, "direct", reply, prompt_tokens=0, completion_tokens=out * d_chars / chars, calls=0,
                     estimated=True)
                _add(usage, "comparative", reply, prompt_tokens=0, completion_tokens=out * c_chars / chars, calls=0,
                     estimated=True)
                if not parsed.parse_error and not parsed.malformed and tl.ranking == "teacher":
                    tl.keywords = parsed.keywords
                    tl.direct = {window[i]: text for i, text in parsed.direct.items()}
                    tl.compare = [{"higher": window[hi], "lower": window[lo], "text": text}
                                  for (hi, lo), text in parsed.comparative.items()]
                    missing_reasons += parsed.missing_reasons
                    continue
                parse_errors += int(bool(parsed.parse_error))
                tl.counts["parse_error"] = parsed.parse_error or "no identifier"
            if cfg.json_fallback == "separate":
                fallback_queries.append(tl.qid)
                r, s = _reason_requests(tl, clip)
                requests += r
                slots += s
            else:
                missing_reasons += 2 * len(tl.docids) - 1
        asked = _ask_reasons(rcfg, requests, slots, cache, usage)
        if fallback_queries:
            log.warning("teacher: %d of %d JSON answers unusable (parse errors: %d); their reasons came from the "
                        "separate prompts (r2r.teacher.json_fallback: separate)", len(fallback_queries), len(lists),
                        parse_errors)
        summary_json = {"json_parse_errors": parse_errors, "json_fallback_queries": fallback_queries,
                        "reasons_from_fallback": asked["ok"], "missing_reasons": missing_reasons}
    else:
        requests, slots = [], []
        for tl in lists:
            r, s = _reason_requests(tl, clip)
            requests += r
            slots += s
        asked = _ask_reasons(rcfg, requests, slots, cache, usage)
        for q in qids:  # the ranking calls (every answer, cached ones included: usage is what generation took)
            usage["ranking"]["calls"] += stats[q].calls
            usage["ranking"]["prompt_tokens"] += stats[q].answer_prompt_tokens
            usage["ranking"]["completion_tokens"] += stats[q].answer_completion_tokens
    fallbacks = [tl.qid for tl in lists if tl.ranking != "teacher"]
    if fallbacks:
        log.warning("teacher: %d of %d rankings fell back to the first-stage order (e.g. query %s: %s)",
                    len(fallbacks), len(lists), fallbacks[0], next(tl.ranking for tl in lists if tl.qid == fallbacks[0]))
    fresh = asked["fresh"]
    rank_tokens = [sum(getattr(st, k) for st in stats.values()) for k in ("prompt_tokens", "completion_tokens")]
    prompt_tokens = sum(r.prompt_tokens for r in fresh) + rank_tokens[0]
    completion_tokens = sum(r.completion_tokens for r in fresh) + rank_tokens[1]
    expected = sum(2 * len(tl.docids) - 1 for tl in lists)
    got = sum(len(tl.direct) + len(tl.compare) for tl in lists)
    summary = {"prompt": cfg.prompt, "decoding": cfg.decoding(), "queries": len(lists),
               "fallbacks": sum(tl.ranking != "teacher" for tl in lists),
               "ranking_calls": sum(st.calls for st in stats.values()),
               "ranking_malformed": sum(st.malformed for st in stats.values()),
               "reason_prompts": expected if cfg.prompt == "json" else len(requests), "reasons_ok": got,
               "reasons_failed": asked["failed"],
               "cached": asked["cached"] + sum(st.cached for st in stats.values()),
               "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
               "cost_usd": cost_usd(rcfg, prompt_tokens, completion_tokens),
               "usage_by_type": {t: {**u, "prompt_tokens": round(u["prompt_tokens"], 3),
                                     "completion_tokens": round(u["completion_tokens"], 3)} for t, u in usage.items()},
               **summary_json}
    return lists, summary


def as_records(lists: list[TeacherList]) -> list[dict]:
    return [asdict(tl) for tl in lists]
