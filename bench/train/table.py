"""The paper's Table 1: rows methods, columns models.

The paper's two columns, measured the same way for every cell on the held-out (valid split) queries,
before -> after training (`bench.train.methods.paper_table1_metrics`, computed in the training worker):
- pair loss: mean over held-out preference pairs of -log sigmoid(s_chosen - s_rejected), s = the cell's
  own scoring neuron - one loss for every method (each trainer's own loss is not comparable: SFT's
  cross-entropy beside PPO's policy loss);
- top-1: share of held-out queries whose top-scored judged item has the query's highest grade.

Then each trainer's own final loss and the pairwise accuracy (share of held-out pairs whose chosen item
scores above the rejected one), before -> after, as extra columns. A cell whose scoring neuron did not
move on the held-out items (or whose loss did not move) is flagged: it learned nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.train.config import METHOD_ORDER
from bench.train.grid import CellResult


STALLED = "⚠"


def _acc(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _fmt(r: CellResult) -> str:
    if r.status != "ok":
        return "failed"
    m = r.metrics
    loss = m.get("final_loss")
    if loss is None:
        shown = "n/a"
    else:  # PPO's policy loss can be ~1e-7: show it rather than 0.000
        shown = f"{loss:.3f}" if abs(loss) >= 0.01 or loss == 0 else f"{loss:.2g}"
    flag = f" {STALLED}" if m.get("stalled") else ""
    return f"{shown} / {_acc(m.get('accuracy_before'))} → {_acc(m.get('pairwise_accuracy'))}{flag}"


def _moved(before, after, fmt: str) -> str:
    if after is None:
        return "n/a"
    return f"{'n/a' if before is None else format(before, fmt)} → {format(after, fmt)}"


def paper_table1(results: list[CellResult]) -> pd.DataFrame:
    """The paper's columns per model: the common held-out pair loss and top-1 accuracy, before → after."""
    datasets = list(dict.fromkeys(r.cell.dataset for r in results))
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        label = r.cell.entry.label + (f" @{r.cell.dataset}" if len(datasets) > 1 else "")
        m = r.metrics
        ok = r.status == "ok"
        rows.setdefault(r.cell.method, {})[f"{label} pair loss"] = \
            _moved(m.get("pair_loss_before"), m.get("pair_loss"), ".4f") if ok else "failed"
        rows[r.cell.method][f"{label} top-1"] = \
            _moved(m.get("top1_before"), m.get("top1_accuracy"), ".3f") if ok else "failed"
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df.reindex([m for m in METHOD_ORDER if m in rows]).fillna("-")
    df.index.name = "method"
    return df


def table1(results: list[CellResult]) -> pd.DataFrame:
    datasets = list(dict.fromkeys(r.cell.dataset for r in results))
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        col = r.cell.entry.label + (f" @{r.cell.dataset}" if len(datasets) > 1 else "")
        rows.setdefault(r.cell.method, {})[col] = _fmt(r)
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df.reindex([m for m in METHOD_ORDER if m in rows]).fillna("-")  # "-": the model does not train that method
    df.index.name = "method"
    return df


def _startup(r: CellResult) -> str:
    """The lane start-up a cell shared, or "-" where it is not known (a cell cached from an older run)."""
    seconds = (r.metrics.get("lane") or {}).get("startup_seconds")
    return "-" if seconds is None else f"{seconds:.1f}"


def write_table1(results: list[CellResult], out_dir: Path, provenance: dict, title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paper, own = paper_table1(results), table1(results)
    df = paper.join(own.rename(columns=lambda c: f"{c} trainer loss / pairwise acc"))
    order = [c for label in own.columns for c in (f"{label} pair loss", f"{label} top-1",
                                                  f"{label} trainer loss / pairwise acc") if c in df.columns]
    df = df[order]
    paths = {"md": out_dir / "table1.md", "csv": out_dir / "table1.csv", "json": out_dir / "table1.json"}
    failed = [f"- {r.cell.name}: {r.error}" for r in results if r.status != "ok"]
    n_queries = max((r.metrics.get("n_valid_queries") or 0 for r in results), default=0)
    n_pairs = max((r.metrics.get("n_valid_pairs") or 0 for r in results), default=0)
    md = [f"# {title}", "",
          f"The paper's Table 1, measured the same way for every cell on the held-out (valid split) queries "
          f"({n_queries} queries, {n_pairs} preference pairs), before → after training. **pair loss**: mean of "
          f"-log sigmoid(s_chosen - s_rejected) over the held-out pairs, s = the cell's own scoring neuron (one "
          f"loss for every method; ln 2 = 0.6931 when the neuron cannot tell the items apart); **top-1**: share of "
          f"held-out queries whose top-scored judged item has the query's highest grade.", "", paper.to_markdown(),
          "", "Each trainer's own final loss (not comparable across methods: SFT's cross-entropy, RM's and DPO's "
          "preference losses, PPO's policy loss) / pairwise accuracy on the held-out pairs, before → after training; "
          f"{STALLED} = the cell did not learn (its scoring neuron or its loss did not move).", "", own.to_markdown(),
          ""]
    stalled = [f"- {r.cell.name}" for r in results if r.status == "ok" and r.metrics.get("stalled")]
    if stalled:
        md += ["Cells that did not learn:", *stalled, ""]
    if failed:
        md += ["Failed cells:", *failed, ""]
    timing = [r for r in results if r.status == "ok" and r.metrics.get("seconds") is not None]
    if timing:
        md += ["Per cell: wall seconds in its worker (building the trainer, scoring held-out pairs before and after, "
               "training) vs seconds inside trainer.train(); the lane's start-up is shared by its cells.", "",
               "| cell | wall s | trainer s | lane start-up s (shared) |", "|:--|--:|--:|--:|"]
        md += [f"| {r.cell.name} | {r.metrics['seconds']:.1f} | {r.metrics.get('train_seconds', 0):.1f} | "
               f"{_startup(r)} |" for r in timing]
        md.append("")
    md.append(f"config {provenance.get('config_hash')} · seed {provenance.get('seed')} · "
              f"commit {str(provenance.get('git_commit'))[:10]}")
    write_text_atomic(paths["md"], "\n".join(md) + "\n")
    write_text_atomic(paths["csv"], df.to_csv())
    cells = [{"name": r.cell.name, "model": r.cell.entry.model, "label": r.cell.entry.label, "family": r.cell.family,
              "params": r.cell.params, "method": r.cell.method, "dataset": r.cell.dataset, "key": r.cell.key,
              "status": r.status, "error": r.error, "path": str(r.path) if r.path else None,
              **{k: r.metrics.get(k) for k in ("pair_loss_before", "pair_loss", "top1_before", "top1_accuracy",
                                               "n_valid_queries", "final_loss", "first_loss", "train_loss",
                                               "accuracy_before",
                                               "pairwise_accuracy", "score_shift", "stalled", "n_valid_pairs", "steps",
                                               "samples", "seconds", "train_seconds", "samples_per_s", "fitting",
                                               "lane")}}
             for r in results]
    write_json_atomic(paths["json"], {"title": title, "provenance": provenance, "cells": cells,
                                      "table": {"columns": ["method", *df.columns],
                                                "rows": [[i, *row] for i, row in zip(df.index, df.values.tolist())]}})
    return paths
