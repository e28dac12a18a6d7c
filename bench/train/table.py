"""The paper's Table 1: rows methods, columns models, each cell "final loss / pairwise accuracy before -> after".

Pairwise accuracy = share of held-out (valid split) preference pairs whose chosen item the
cell's single-neuron scorer scores above the rejected one, measured with the untrained model
(before) and the trained one (after). A cell whose scoring neuron did not move on the held-out
items (or whose loss did not move) is flagged: it learned nothing.
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
    df = table1(results)
    paths = {"md": out_dir / "table1.md", "csv": out_dir / "table1.csv", "json": out_dir / "table1.json"}
    failed = [f"- {r.cell.name}: {r.error}" for r in results if r.status != "ok"]
    md = [f"# {title}", "", "Each cell: final training loss / pairwise accuracy on held-out (valid split) pairs, "
          f"before → after training; {STALLED} = the cell did not learn (its scoring neuron or its loss did not move).",
          "", df.to_markdown(), ""]
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
              **{k: r.metrics.get(k) for k in ("final_loss", "first_loss", "train_loss", "accuracy_before",
                                               "pairwise_accuracy", "score_shift", "stalled", "n_valid_pairs", "steps",
                                               "samples", "seconds", "train_seconds", "samples_per_s", "fitting",
                                               "lane")}}
             for r in results]
    write_json_atomic(paths["json"], {"title": title, "provenance": provenance, "cells": cells,
                                      "table": {"columns": ["method", *df.columns],
                                                "rows": [[i, *row] for i, row in zip(df.index, df.values.tolist())]}})
    return paths
