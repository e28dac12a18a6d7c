"""Per-request explanations for the API, from the explain and reason stages' own code.

Attributions: `bench.explain.kernel_shap.explain_item` (real shap KernelSHAP over the item's
words, every coalition scored by the same `Scorer` that ranked the item, in padded batches),
with the experiment's `explain:` settings when present and the serve config's k / nsamples.
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
