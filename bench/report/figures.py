"""Fig. 4 of the paper: a horizontal bar chart of an item's top attributions, one PNG per item."""
from __future__ import annotations

import re
from pathlib import Path

from bench.artifacts import atomic_path


def item_slug(item: dict) -> str:
    raw = f"{item['system']}__{item['dataset']}__{item['qid']}__{item['docid']}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def attribution_bar_chart(item: dict, path: Path, n: int | None = None) -> Path | None:
    """Bars of the top-k words by attribution value (largest on top); None for items without values."""
    top = item.get("topk") or []
    if n:
        top = top[:n]
    if not top:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    labels = [t["word"] if len(t["word"]) <= 24 else t["word"][:23] + "…" for t in top][::-1]
    values = [t["value"] for t in top][::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(top) + 1.4), dpi=110)
    ax.barh(range(len(values)), values, color=["#1f77b4" if v >= 0 else "#d62728" for v in values])
    ax.set_yticks(range(len(values)), labels)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"SHAP value ({item.get('unit', 'word')} attribution to the ranking score)")
    query = item["query"] if len(item["query"]) <= 60 else item["query"][:59] + "…"
    ax.set_title(f"{item['system']} · rank {item['rank']} · {item['docid']}\nquery: {query}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
