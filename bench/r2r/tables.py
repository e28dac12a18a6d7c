"""The R2R tables, written next to Table 1 (md, csv, json, tex) and shown on the site.

- R2R Table 1: student variants (and the baseline and listwise LLM re-rankers) x data sources,
  NDCG@5 and NDCG@10, marked where a paired t-test against `r2r.baseline` (Holm-corrected over the
  systems of the table) finds a difference at p < alpha.
- R2R Table 3: each student's own direct-relevance reasons against the teacher's, on the reference
  test pairs: BLEU, ROUGE-L and BERTScore (plus MiniLM cosine).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.r2r.config import VARIANT_LABELS

MEASURES = ("nDCG@5", "nDCG@10")


def _label(info) -> str:
    if info.kind == "trained" and info.method in VARIANT_LABELS:
        return f"{info.name} ({VARIANT_LABELS[info.method]})"
    return info.name


def r2r_table1(per_query: pd.DataFrame, systems: dict, exp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table of values with marks, significance rows) for the baseline, listwise systems and R2R cells."""
    from bench.evaluate.significance import compare

    baseline = exp.r2r.baseline
    keep = [baseline] + [s for s, i in systems.items() if i.kind == "listwise" or i.method in VARIANT_LABELS]
    keep = [s for s in dict.fromkeys(keep) if s in set(per_query["system"])]
    rows = per_query[per_query["system"].isin(keep) & per_query["measure"].isin(MEASURES)]
    sig = compare(rows, [baseline], test="t-test", correction="holm", alpha=exp.report.alpha, ci_measure=None)
    marked = {(r.system, r.dataset, r.measure) for r in sig[sig["significant"]].itertuples()}
    means = rows.groupby(["system", "dataset", "measure"])["value"].mean()
    datasets = list(dict.fromkeys(rows["dataset"]))
    table = pd.DataFrame(index=[_label(systems[s]) for s in keep])
    table.index.name = "system"
    for d in datasets:
        for m in MEASURES:
            col = f"{d} {m}" if len(datasets) > 1 else m
            table[col] = [f"{means[(s, d, m)]:.4f}{'†' if (s, d, m) in marked else ''}" if (s, d, m) in means else "–"
                          for s in keep]
    return table, sig


def r2r_table3(results: list) -> pd.DataFrame:
    """Student reasons vs the teacher's on the reference pairs, per R2R cell."""
    from bench.evaluate.explanations import text_agreement

    out = []
    for r in results:
        reasons = r.metrics.get("student_reasons") or []
        if r.status != "ok" or r.cell.method not in VARIANT_LABELS or not reasons:
            continue
        agree = text_agreement([x["student"] or "-" for x in reasons], [x["teacher"] for x in reasons])
        out.append({"system": f"{r.cell.name} ({VARIANT_LABELS[r.cell.method]})", "n": agree["n"],
                    "BLEU": agree["bleu"], "ROUGE-L": agree["rougeL"], "BERTScore": agree["bertscore_f1"],
                    "cosine": agree["cosine"]})
    return pd.DataFrame(out).set_index("system") if out else pd.DataFrame()


def write_r2r_tables(per_query: pd.DataFrame, systems: dict, results: list, exp, out_dir: Path,
                     provenance: dict) -> dict[str, Path]:
    out_dir = Path(out_dir)
    t1, sig = r2r_table1(per_query, systems, exp)
    t3 = r2r_table3(results)
    legend = (f"† differs significantly from {exp.r2r.baseline} (paired t-test, Holm-corrected over the table's "
              f"systems, p < {exp.report.alpha:g}).")
    foot = f"config {provenance.get('config_hash')} · seed {provenance.get('seed')} · commit " \
           f"{str(provenance.get('git_commit'))[:10]}"
    paths = {"md": out_dir / "r2r_table1.md", "csv": out_dir / "r2r_table1.csv", "json": out_dir / "r2r_table1.json",
             "tex": out_dir / "r2r_table1.tex", "table3_md": out_dir / "r2r_table3.md",
             "table3_csv": out_dir / "r2r_table3.csv", "table3_json": out_dir / "r2r_table3.json"}
    write_text_atomic(paths["md"], "\n".join([f"# R2R Table 1: {exp.name}", "", t1.to_markdown(), "", legend, "",
                                              foot]) + "\n")
    write_text_atomic(paths["csv"], t1.to_csv())
    write_text_atomic(paths["tex"], t1.to_latex(escape=True, caption=f"R2R Table 1 ({exp.name}). {legend}"))
    write_json_atomic(paths["json"], {"title": f"R2R Table 1: {exp.name}", "provenance": provenance, "legend": legend,
                                      "table": {"columns": ["system", *t1.columns],
                                                "rows": [[i, *row] for i, row in zip(t1.index, t1.values.tolist())]},
                                      "significance": sig.to_dict(orient="records")})
    # per column: tabulate formats a row at a time, so the count would otherwise print as 20.0000
    fmt = ["", *(".0f" if c == "n" else ".2f" if c == "BLEU" else ".4f" for c in t3.columns)]
    t3md = t3.to_markdown(floatfmt=fmt) if not t3.empty else "(no student reasons: no R2R cell finished)"
    write_text_atomic(paths["table3_md"], "\n".join([
        f"# R2R Table 3: {exp.name}", "",
        "Each student's own direct-relevance reasons scored against the teacher's reasons for the same (query, "
        "document) pairs of the reference test queries.", "", t3md, "", foot]) + "\n")
    write_text_atomic(paths["table3_csv"], t3.to_csv())
    write_json_atomic(paths["table3_json"], {"title": f"R2R Table 3: {exp.name}", "provenance": provenance,
                                             "table": {"columns": ["system", *t3.columns],
                                                       "rows": [[i, *row] for i, row in
                                                                zip(t3.index, t3.values.tolist())]}})
    return paths
