"""The explainer comparison as tables and a chart: `explainers.md`, the site's explainer x metric table and
its cost-vs-faithfulness chart, all read from `explanations.json` (`bench.explain.summary`)."""
from __future__ import annotations

import re

from bench.explain.summary import fmt_interval

# metric of `summarize_items` -> (header, which way is better)
METRICS = {"aopc_comprehensiveness": ("AOPC comp", "↑"), "aopc_sufficiency": ("AOPC suff", "↓"),
           "naopc_comprehensiveness": ("NAOPC comp", "↑"), "naopc_sufficiency": ("NAOPC suff", "↓"),
           "tau_loo": ("tau LOO", "↑"), "stability": ("stability", "↑"),
           "evaluations": ("model rows / item", "↓"), "seconds": ("seconds / item", "↓")}


def _p(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def explainer_rows(metrics: dict) -> list[dict]:
    """One row per (system, explainer): {system, explainer, primary, <metric>: {mean, ci_low, ...}}."""
    rows = []
    for system, s in (metrics.get("explainers") or {}).items():
        for name, cells in ((s.get("explainers") or {}).get("explainers") or {}).items():
            rows.append({"system": system, "explainer": name, "primary": name == s.get("primary"), **cells})
    return rows


def scheme_note(metrics: dict) -> str:
    schemes = sorted({sc for s in (metrics.get("explainers") or {}).values()
                      for sc in ((s.get("explainers") or {}).get("aopc_scheme") or [])})
    bins = {"eraser": "ERASER's bins: the top 1, 5, 10, 20, 50 % of the item's words (rounded up)",
            "ferret": "ferret's bins: 10 %..100 % of the words, positive attributions only"}
    return "; ".join(bins.get(s, s) for s in schemes) or "no AOPC computed"


def explainers_markdown(metrics: dict, title: str) -> str:
    lines = [f"# {title}: explainers compared", "",
             "Every number: the mean of per-query means [95 % percentile bootstrap interval resampling queries]; "
             f"p = sigmoid(score). AOPC: {scheme_note(metrics)}. ↑ higher is better, ↓ lower is better. "
             "Paired tests over the queries two explainers (or systems) share, Holm-corrected per metric.", ""]
    for system, s in (metrics.get("explainers") or {}).items():
        ex = s.get("explainers") or {}
        names = list(ex.get("explainers") or {})
        n_q = max((c.get("n_queries", 0) for cells in (ex.get("explainers") or {}).values() for c in cells.values()),
                  default=0)
        lines += [f"## {system}", "", f"{s.get('items', 0)} items ({s.get('explained', 0)} explained) over {n_q} "
                  f"queries; primary explainer `{s.get('primary')}` (its top-k item words feed the reason prompt, "
                  "Fig. 4 and comp@k / suff@k).", ""]
        if names:
            lines += ["| explainer | " + " | ".join(f"{h} {arrow}" for h, arrow in METRICS.values()) + " |",
                      "|---|" + "---|" * len(METRICS)]
            for name in names:
                cells = ex["explainers"][name]
                digits = {"evaluations": 1, "seconds": 2}
                lines.append(f"| {name} | " + " | ".join(fmt_interval(cells.get(m), digits.get(m, 4)) for m in METRICS)
                             + " |")
            lines.append("")
            sig = [(m, r) for m, rows in (ex.get("comparisons") or {}).items() for r in rows
                   if m in METRICS and m not in ("evaluations", "seconds")]
            if sig:
                lines += ["Paired tests between explainers (over shared queries; Holm within each metric):", "",
                          "| metric | a | b | queries | a - b [95 % CI] | p | p Holm |",
                          "|---|---|---|---|---|---|---|"]
                for m, r in sig:
                    delta = fmt_interval({"mean": r.get("delta"), "ci_low": r.get("ci_low"),
                                          "ci_high": r.get("ci_high")})
                    mark = " *" if r.get("significant") else ""
                    lines.append(f"| {METRICS[m][0]} | {r['a']} | {r['b']} | {r['n_queries']} | {delta} | "
                                 f"{_p(r.get('p_value'))} | {_p(r.get('p_holm'))}{mark} |")
                lines += ["", "\\* significant at alpha 0.05 after Holm's correction.", ""]
            agree = ex.get("agreement") or {}
            if agree:
                lines += ["Agreement: Kendall tau between two explainers' values on an item, mean [95 % CI]:", "",
                          "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
                for a in names:
                    lines.append(f"| {a} | " + " | ".join("1" if a == b else fmt_interval(agree.get(a, {}).get(b), 3)
                                                          for b in names) + " |")
                lines.append("")
        if s.get("topk"):
            lines += [f"Primary explainer's top-k item words (the query kept): comprehensiveness@k (↑), "
                      "sufficiency@k (↓), and k random item words removed (the reference to beat):", "",
                      "| k | comprehensiveness | sufficiency | random comprehensiveness |", "|---|---|---|---|"]
            for k, cells in s["topk"].items():
                lines.append(f"| {k} | {fmt_interval(cells['comprehensiveness'])} | "
                             f"{fmt_interval(cells['sufficiency'])} | "
                             f"{fmt_interval(cells['random_comprehensiveness'])} |")
            lines.append("")
        lw = s.get("listwise")
        if lw:
            lines += ["RankingSHAP (listwise): validity@k = Kendall tau with the original ranking keeping only the "
                      "top-k features (↑), completeness@k = tau removing them (↓):", "",
                      "| k | validity | completeness |", "|---|---|---|"]
            for k in lw.get("validity", {}):
                lines.append(f"| {k} | {fmt_interval(lw['validity'][k])} | "
                             f"{fmt_interval(lw.get('completeness', {}).get(k))} |")
            lines += ["", f"Cost per query: {fmt_interval(lw.get('evaluations'), 1)} model rows, "
                          f"{fmt_interval(lw.get('seconds'), 2)} s.", ""]
    comps = metrics.get("system_comparisons") or {}
    if any(comps.values()):
        lines += ["## Systems compared (their primary explainer)", "",
                  "| metric | a | b | queries | a - b [95 % CI] | p | p Holm |", "|---|---|---|---|---|---|---|"]
        for m, rows in comps.items():
            for r in rows:
                delta = fmt_interval({"mean": r.get("delta"), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high")})
                mark = " *" if r.get("significant") else ""
                lines.append(f"| {METRICS.get(m, (m,))[0]} | {r['a']} | {r['b']} | {r['n_queries']} | {delta} | "
                             f"{_p(r.get('p_value'))} | {_p(r.get('p_holm'))}{mark} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def site_table(metrics: dict) -> dict | None:
    """The site's explainer x metric table ({title, columns, rows, note}), or None without explainers."""
    rows = explainer_rows(metrics)
    if not rows:
        return None
    columns = ["system", "explainer"] + [f"{h} {a}" for h, a in METRICS.values()]
    digits = {"evaluations": 1, "seconds": 2}
    body = [[r["system"], r["explainer"] + (" (primary)" if r["primary"] else "")]
            + [fmt_interval(r.get(m), digits.get(m, 4)) for m in METRICS] for r in rows]
    return {"title": "Explainers: faithfulness, stability and cost", "columns": columns, "rows": body,
            "note": "Mean of per-query means [95 % bootstrap interval over queries]; p = sigmoid(score); AOPC: "
                    f"{scheme_note(metrics)}. Paired Holm-corrected tests: explainers.md / explanations.json."}


def cost_faithfulness_svg(metrics: dict) -> str:
    """Each (system, explainer): model rows per item (x, log scale) against AOPC comprehensiveness (y), both
    with their 95 % intervals over queries; inline SVG (matplotlib)."""
    import io

    points = [r for r in explainer_rows(metrics)
              if (r.get("aopc_comprehensiveness") or {}).get("mean") is not None
              and (r.get("evaluations") or {}).get("mean") is not None]
    if not points:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    systems = list(dict.fromkeys(r["system"] for r in points))
    markers = "osD^v<>PX*"
    for r in points:
        x, y = r["evaluations"], r["aopc_comprehensiveness"]
        xm = max(x["mean"], 0.5)  # `random` spends no model rows: drawn at 0.5 on the log axis
        lo = max(x["ci_low"] if x["ci_low"] is not None else xm, 0.5)
        hi = max(x["ci_high"] if x["ci_high"] is not None else xm, 0.5)
        xerr = [[max(xm - lo, 0)], [max(hi - xm, 0)]]
        yerr = [[y["mean"] - (y["ci_low"] if y["ci_low"] is not None else y["mean"])],
                [(y["ci_high"] if y["ci_high"] is not None else y["mean"]) - y["mean"]]]
        ax.errorbar([xm], [y["mean"]], xerr=xerr, yerr=yerr, fmt=markers[systems.index(r["system"]) % len(markers)],
                    capsize=2, color=f"C{list(dict.fromkeys(p['explainer'] for p in points)).index(r['explainer'])}")
        ax.annotate(f"{r['explainer']} · {r['system']}" if len(systems) > 1 else r["explainer"], (xm, y["mean"]),
                    fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model rows per item (forward evaluations; log scale; random at 0.5)")
    ax.set_ylabel("AOPC comprehensiveness (p scale)")
    ax.grid(alpha=0.3)
    ax.set_title("Cost vs faithfulness: mean with 95 % bootstrap intervals over queries", fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
