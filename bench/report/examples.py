"""`table3.md`: the paper's Tables 3-4 as examples: query, item, top-k words, and the two explanations."""
from __future__ import annotations

from pathlib import Path

from bench.artifacts import write_text_atomic


def _cell(text: str | None, limit: int = 600) -> str:
    if text is None:
        return ""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _explanation(item: dict, variant: str) -> str:
    e = (item.get("explanations") or {}).get(variant)
    if not e:
        return "(not requested)"
    if e.get("status") != "ok":
        return f"({e.get('status')}: {_cell(e.get('message'), 200)})"
    return _cell(e.get("text"))


def examples_markdown(items: list[dict], title: str, per_system: int = 5) -> str:
    lines = [f"# {title}", "",
             "Explanations written by the reason model from the query, the item and its top-k words "
             "(with attributions) or from the query and the item alone (without), as in the paper's Tables 3-4.", ""]
    for system in sorted({it["system"] for it in items}):
        mine = [it for it in items if it["system"] == system][:per_system]
        lines += [f"## {system}", "", "| query | item | top-k words (SHAP value) | with attributions | without attributions |",
                  "| --- | --- | --- | --- | --- |"]
        for it in mine:
            words = ", ".join(f"{t['word']} ({t['value']:+.3f})" for t in it.get("topk", [])) or f"({it.get('status')})"
            item = f"{it['docid']} (rank {it['rank']}) {it.get('url') or ''}: {_cell(it.get('text'), 300)}"
            lines.append(f"| {_cell(it['query'], 200)} | {item} | {_cell(words, 400)} | {_explanation(it, 'with')} | "
                         f"{_explanation(it, 'without')} |")
        lines.append("")
    return "\n".join(lines)


def write_examples(items: list[dict], path: Path, title: str = "Explanations with and without attributions") -> Path:
    return write_text_atomic(Path(path), examples_markdown(items, title))
