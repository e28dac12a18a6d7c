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
    ax.set_xlabel(f"{item.get('primary') or 'kernel_shap'} value ({item.get('unit', 'word')} attribution to the "
                  f"ranking score)")
    query = item["query"] if len(item["query"]) <= 60 else item["query"][:59] + "…"
    ax.set_title(f"{item['system']} · rank {item['rank']} · {item['docid']}\nquery: {query}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def leaderboard_chart_svg(doc: dict) -> str:
    """Each system's primary measure (report.ci_measure) with its bootstrap confidence interval, one panel
    per data source, as inline SVG (matplotlib; no scripts, no CDN)."""
    import io

    intervals = doc.get("confidence_intervals") or {}
    datasets = [d for d in doc.get("datasets", []) if any(d in v for v in intervals.values())]
    if not datasets:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [r["system"] for r in doc["rows"] if r["system"] in intervals]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets) + 1.5, 0.32 * len(order) + 1.3),
                             squeeze=False, sharey=True)
    measure = ""
    for ax, d in zip(axes[0], datasets):
        ys, means, lows, highs = [], [], [], []
        for y, s in enumerate(order[::-1]):
            ci = intervals[s].get(d)
            if not ci or ci["mean"] is None:
                continue
            measure = ci["measure"]
            ys.append(y)
            means.append(ci["mean"])
            lows.append(ci["mean"] - (ci["low"] if ci["low"] is not None else ci["mean"]))
            highs.append((ci["high"] if ci["high"] is not None else ci["mean"]) - ci["mean"])
        ax.barh(ys, means, xerr=[lows, highs], color="#4c78a8", ecolor="#333333", capsize=2, height=0.6)
        ax.set_yticks(range(len(order)), order[::-1], fontsize=8)
        ax.set_title(d, fontsize=9)
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
    conf = doc.get("report", {}).get("confidence", 0.95)
    fig.suptitle(f"{measure}: mean over queries with its {conf:.0%} bootstrap confidence interval", fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML
    # the RDF <metadata> block only names the generator; dropping it keeps the page small
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
