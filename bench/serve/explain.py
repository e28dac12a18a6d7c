"""Per-request explanations for the API, from the explain and reason stages' own code.

Attributions: `bench.explain.kernel_shap.explain_item` (real shap KernelSHAP over the item's
words, every coalition scored by the same `Scorer` that ranked the item, in padded batches),
with the experiment's `explain:` settings when present and the serve config's k / nsamples.
Explanation text: the reason stage's backend (`reason:` of the experiment: local transformers,
an OpenAI-compatible endpoint, or vLLM) with the paper's prompt given those top-k words.
"""
from __future__ import annotations

from typing import Optional


def explain_config(explain: Optional[dict], top_k: int, nsamples: int):
    """The explain stage's config for one request: no erasure curves (ks=[]), serve's k and nsamples."""
    from bench.explain.config import ExplainConfig

    return ExplainConfig.model_validate({**(explain or {}), "k": top_k, "nsamples": nsamples, "ks": []})


def explain_item(scorer, query: str, text: str, cfg, seed: int) -> list[dict]:
    """Top-k attributed words [{word, value}] of `text` for `scorer`'s score of (query, text)."""
    from bench.explain.kernel_shap import explain_item as shap_explain

    out = shap_explain(scorer, query, text, cfg, seed)
    return [{"word": t["word"], "value": float(t["value"])} for t in out.get("topk", [])]


def build_reasoner(reason: Optional[dict]):
    """The reason stage's LLM backend for `reason:` of the experiment (None: no explanation text)."""
    if not reason:
        return None
    from bench.reason.backends import build_backend
    from bench.reason.config import ReasonConfig

    return build_backend(ReasonConfig.model_validate(reason))


def reason_texts(backend, query: str, items: list[tuple[str, str, list[dict]]]) -> list[Optional[str]]:
    """One explanation per (url, text, attributions) item: the paper's prompt with the top-k words.

    A failed or empty generation gives None for that item (the ranking is still answered)."""
    from bench.reason.backends import Request
    from bench.reason.prompts import explanation_prompt, messages

    requests = [Request(f"serve/{i}", messages(explanation_prompt(query, url or "", text, attrs)))
                for i, (url, text, attrs) in enumerate(items)]
    return [r.text if r.status == "ok" else None for r in backend.generate(requests)]
