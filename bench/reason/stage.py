"""Reason stage: one explanation per explained item and prompt variant (with / without attributions).

Input: the explain stage's items. Output: the same items with `explanations[variant]` (text,
status, message, token counts, attempts, cached) and a run summary (tokens, cost, failures).
Items whose attributions failed (empty text, errors) are marked "skipped", never dropped.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from bench.reason.backends import Reply, Request, ResponseCache, build_backend, cost_usd, generate_cached
from bench.reason.config import ReasonConfig
from bench.reason.prompts import explanation_prompt, messages

log = logging.getLogger("bench")

EXPLAINABLE = ("ok", "k_clamped")


def build_requests(items: list[dict], cfg: ReasonConfig) -> list[tuple[int, str, Request]]:
    out = []
    for i, item in enumerate(items):
        if item.get("status") not in EXPLAINABLE:
            continue
        for variant in cfg.variants:
            topk = item["topk"] if variant == "with" else None
            prompt = explanation_prompt(item["query"], item.get("url", ""), item["text"], topk)
            out.append((i, variant, Request(f"{item['system']}/{item['qid']}/{item['docid']}/{variant}", messages(prompt))))
    return out


def reason_items(items: list[dict], cfg: ReasonConfig, cache_dir: Path) -> tuple[list[dict], dict]:
    """Explanations for every item (in place of a copy) and the run's usage summary."""
    reqs = build_requests(items, cfg)
    out = [dict(item, explanations={}) for item in items]
    for item in out:
        if item.get("status") not in EXPLAINABLE:
            for variant in cfg.variants:
                item["explanations"][variant] = asdict(Reply(None, "skipped",
                                                             f"no attributions: {item.get('message') or item.get('status')}"))
    replies: list[Reply] = []
    if reqs:
        backend = build_backend(cfg)
        try:
            replies = generate_cached(backend, [r for _, _, r in reqs], ResponseCache(cache_dir))
        finally:
            backend.close()
    for (i, variant, req), reply in zip(reqs, replies):
        out[i]["explanations"][variant] = {**asdict(reply), "prompt": req.messages[-1]["content"]}
        if reply.status != "ok":
            log.warning("reason: %s: %s: %s", req.id, reply.status, reply.message)
    fresh = [r for r in replies if not r.cached]
    prompt_tokens = sum(r.prompt_tokens for r in fresh)
    completion_tokens = sum(r.completion_tokens for r in fresh)
    summary = {
        "backend": cfg.backend, "model": cfg.model, "decoding": cfg.decoding(), "prompts": len(reqs),
        "ok": sum(r.status == "ok" for r in replies), "cached": len(replies) - len(fresh),
        "failed": {s: sum(r.status == s for r in replies) for s in ("error", "malformed") if any(r.status == s for r in replies)},
        "attempts": sum(r.attempts for r in fresh),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "cost_usd": cost_usd(cfg, prompt_tokens, completion_tokens),
        "price_per_1m_tokens": cfg.prices.get(cfg.model),
    }
    log.info("reason: %d prompts, %d ok, %d cached, %d+%d tokens, cost %s USD", summary["prompts"], summary["ok"],
             summary["cached"], prompt_tokens, completion_tokens, summary["cost_usd"])
    return out, summary
