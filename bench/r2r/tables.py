"""The R2R tables, written next to Table 1 (md, csv, json, tex) and shown on the site.

- R2R Table 1: student variants (and the baseline and listwise LLM re-rankers) x data sources,
  NDCG@5 and NDCG@10, marked where a paired t-test against `r2r.baseline` (Holm-corrected over the
  systems of the table) finds a difference at p < alpha.
- R2R Table 3: each student's own direct-relevance reasons against the teacher's, on the reference
  test pairs: BLEU, ROUGE-L and BERTScore (plus MiniLM cosine).
- R2R Table 5: listwise LLM re-rankers (the teachers) ranking with R2R's reasoning prompt vs RankGPT's
  plain prompt, NDCG@5 / NDCG@10 per data source, with the reasoning answers' JSON parse errors.
- The per-reasoning-type cost table (R2R appendix E): the teacher's calls, input and output tokens and
  cost per query for the ranking, the direct reasons and the comparative reasons.
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


def _legend(exp, flags: list) -> str:
    from bench.report.flags import legend_lines

    return " ".join([f"† differs significantly from {exp.r2r.baseline} (paired t-test, Holm-corrected over the "
                     f"table's systems, p < {exp.report.alpha:g}).", *legend_lines(flags)])


def _marked(per_query: pd.DataFrame, keep: list[str], exp, flags: list = ()) -> tuple[list[str], dict, pd.DataFrame]:
    """(systems kept, {(dataset, measure) column: values with † marks}, significance rows): NDCG@5/10 of the
    systems against `r2r.baseline`, paired t-tests Holm-corrected over the table's systems."""
    from bench.evaluate.significance import compare

    baseline = exp.r2r.baseline
    keep = [s for s in dict.fromkeys([baseline, *keep]) if s in set(per_query["system"])]
    rows = per_query[per_query["system"].isin(keep) & per_query["measure"].isin(MEASURES)]
    sig = compare(rows, [baseline], test="t-test", correction="holm", alpha=exp.report.alpha, ci_measure=None)
    from bench.report.flags import symbols

    marked = {(r.system, r.dataset, r.measure) for r in sig[sig["significant"]].itertuples()}
    flagged = symbols(list(flags))  # the leaderboard's marks (repaired listwise answers, training queries)
    means = rows.groupby(["system", "dataset", "measure"])["value"].mean()
    datasets = list(dict.fromkeys(rows["dataset"]))
    cols = {}
    for d in datasets:
        for m in MEASURES:
            cols[f"{d} {m}" if len(datasets) > 1 else m] = [
                f"{means[(s, d, m)]:.4f}{'†' if (s, d, m) in marked else ''}{flagged.get((s, d), '')}"
                if (s, d, m) in means else "–"
                for s in keep]
    return keep, cols, sig


def r2r_table1(per_query: pd.DataFrame, systems: dict, exp, flags: list = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table of values with marks, significance rows) for the baseline, listwise systems and R2R cells."""
    keep, cols, sig = _marked(per_query, [s for s, i in systems.items()
                                          if i.kind == "listwise" or i.method in VARIANT_LABELS], exp, flags)
    table = pd.DataFrame(cols, index=[_label(systems[s]) for s in keep])
    table.index.name = "system"
    return table, sig


PROMPT_LABELS = {"rankgpt": "RankGPT (plain ranking)", "rankgpt-reasoning": "R2R reasoning (JSON: keywords, "
                                                                             "direct + comparative reasons)"}


def r2r_table5(per_query: pd.DataFrame, systems: dict, listwise: dict, exp,
               flags: list = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """R2R Table 5: each listwise system (teacher) with its prompt, NDCG@5/10, and the reasoning answers' parse
    errors; the baseline first. `listwise`: the leaderboard's per-system, per-dataset listwise counts."""
    lw = [s for s, i in systems.items() if i.kind == "listwise"]
    keep, cols, sig = _marked(per_query, lw, exp, flags)
    specs = {s.name: s for s in exp.rerank.listwise_systems}
    table = pd.DataFrame(index=keep)
    table["teacher"] = [f"{specs[s].backend}:{specs[s].model}" if s in specs else "" for s in keep]
    table["prompt"] = [PROMPT_LABELS.get(systems[s].method, "") if s in specs else "" for s in keep]
    for c, values in cols.items():
        table[c] = values

    def errors(s: str) -> str:
        if s not in specs:
            return ""
        totals = [d.get("totals", {}) for d in listwise.get(s, {}).values()]
        calls = sum(t.get("calls", 0) for t in totals)
        return f"{sum(t.get('parse_errors', 0) for t in totals)}/{calls}" if specs[s].prompt == "reasoning" else "–"

    table["JSON parse errors / calls"] = [errors(s) for s in keep]
    table.index.name = "system"
    return table, sig


def cost_table(summary: dict, reference_price: tuple[float, float], price: tuple[float, float] | None) -> pd.DataFrame:
    """Per reasoning type: calls, input and output tokens and USD per query (the teacher's price, and the
    reference model's list price), and whether the split is measured or estimated."""
    n = max(1, summary.get("queries", 0))
    usage = summary.get("usage_by_type") or {}
    rows = {}
    labels = {"ranking": "ranking" + (" (the one JSON call: prompt, keywords, identifiers)"
                                      if summary.get("prompt") == "json" else " (RankGPT calls)"),
              "direct": "direct-relevance reasons", "comparative": "comparative reasons"}
    total = {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    for kind in ("ranking", "direct", "comparative"):
        u = usage.get(kind, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "estimated": False})
        for k in total:
            total[k] += u[k]
        rows[labels[kind]] = {**{k: u[k] for k in total}, "estimated": u.get("estimated", False)}
    rows["all reasoning types"] = {**total, "estimated": False}
    out = []
    for label, u in rows.items():
        usd = lambda p: (u["prompt_tokens"] * p[0] + u["completion_tokens"] * p[1]) / 1e6 / n  # noqa: E731
        out.append({"type": label, "calls / query": u["calls"] / n, "input tokens / query": u["prompt_tokens"] / n,
                    "output tokens / query": u["completion_tokens"] / n,
                    "USD / query": usd(price) if price is not None else float("nan"),
                    "USD / query at reference price": usd(reference_price),
                    "basis": "JSON answers: output split by the reasons' share of the answer's characters; "
                             "separate calls: measured" if u["estimated"]
                    else "measured (tokens the endpoint reported)"})
    return pd.DataFrame(out).set_index("type")


def write_r2r_cost(summaries: dict, exp, out_dir: Path, provenance: dict) -> dict[str, Path]:
    """r2r_cost.{md,csv,json}: the teacher's tokens and cost per query by reasoning type, per data source."""
    from bench.reason.config import DEFAULT_PRICES

    cfg = exp.r2r
    ref = cfg.cost_reference_model
    prices = cfg.teacher.reason_config().prices
    own = prices.get(cfg.teacher.model)
    if own is None and (cfg.teacher.backend in ("local", "vllm") or cfg.teacher.base_url):
        own = (0.0, 0.0)  # self-hosted: compute time, not tokens
    out_dir = Path(out_dir)
    tables = {name: cost_table(s, DEFAULT_PRICES[ref], own) for name, s in summaries.items()}
    foot = f"config {provenance.get('config_hash')} · seed {provenance.get('seed')} · commit " \
           f"{str(provenance.get('git_commit'))[:10]}"
    md = [f"# R2R per-reasoning-type cost: {exp.name}", "",
          f"The teacher ({cfg.teacher.backend}:{cfg.teacher.model}, prompt {cfg.teacher.prompt}, temperature "
          f"{cfg.teacher.temperature:g}, top-p {cfg.teacher.top_p:g}) per query: calls, input and output tokens "
          f"and cost of the ranking, the direct-relevance reasons and the comparative reasons. USD / query: at the "
          f"teacher's own price ({'unpriced' if own is None else f'{own[0]:g} / {own[1]:g} USD per 1M input / output tokens'}); "
          f"at reference price: the same tokens at {ref}'s list price ({DEFAULT_PRICES[ref][0]:g} / "
          f"{DEFAULT_PRICES[ref][1]:g} USD per 1M). Tokens of cached answers count as when they were generated.", ""]
    for name, t in tables.items():
        s = summaries[name]
        md += [f"## {name} ({s.get('queries', 0)} queries)", "",
               t.to_markdown(floatfmt=["", ".2f", ".1f", ".1f", ".6f", ".6f", ""]), ""]
    md.append(foot)
    paths = {"md": out_dir / "r2r_cost.md", "csv": out_dir / "r2r_cost.csv", "json": out_dir / "r2r_cost.json"}
    write_text_atomic(paths["md"], "\n".join(md) + "\n")
    write_text_atomic(paths["csv"], pd.concat({k: t for k, t in tables.items()}, names=["dataset"]).to_csv())
    write_json_atomic(paths["json"], {"title": f"R2R per-reasoning-type cost: {exp.name}", "provenance": provenance,
                                      "reference_model": ref, "reference_price": DEFAULT_PRICES[ref],
                                      "teacher_price": own,
                                      "table": {"columns": ["dataset", "type", *next(iter(tables.values())).columns],
                                                "rows": [[k, i, *row] for k, t in tables.items()
                                                         for i, row in zip(t.index, t.values.tolist())]},
                                      "tables": {k: {"columns": ["type", *t.columns],
                                                     "rows": [[i, *row] for i, row in zip(t.index, t.values.tolist())]}
                                                 for k, t in tables.items()}})
    return paths


def write_r2r_table5(per_query: pd.DataFrame, systems: dict, listwise: dict, exp, out_dir: Path,
                     provenance: dict, flags: list = ()) -> dict[str, Path]:
    out_dir = Path(out_dir)
    t5, sig = r2r_table5(per_query, systems, listwise, exp, flags)
    legend = _legend(exp, list(flags))
    foot = f"config {provenance.get('config_hash')} · seed {provenance.get('seed')} · commit " \
           f"{str(provenance.get('git_commit'))[:10]}"
    paths = {"md": out_dir / "r2r_table5.md", "csv": out_dir / "r2r_table5.csv", "json": out_dir / "r2r_table5.json"}
    write_text_atomic(paths["md"], "\n".join([
        f"# R2R Table 5: {exp.name}", "",
        "Listwise LLM re-rankers ranking with R2R's reasoning prompt (one JSON answer per window: keywords, direct "
        "and comparative reasons, ranking) vs RankGPT's plain ranking prompt.", "", t5.to_markdown(), "", legend, "",
        foot]) + "\n")
    write_text_atomic(paths["csv"], t5.to_csv())
    write_json_atomic(paths["json"], {"title": f"R2R Table 5: {exp.name}", "provenance": provenance, "legend": legend,
                                      "table": {"columns": ["system", *t5.columns],
                                                "rows": [[i, *row] for i, row in zip(t5.index, t5.values.tolist())]},
                                      "significance": sig.to_dict(orient="records")})
    return paths


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
                     provenance: dict, flags: list = ()) -> dict[str, Path]:
    out_dir = Path(out_dir)
    t1, sig = r2r_table1(per_query, systems, exp, flags)
    t3 = r2r_table3(results)
    legend = _legend(exp, list(flags))
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
