"""Leaderboard exports: Markdown, CSV, JSON (schema in schema/leaderboard.schema.json), LaTeX.

Every table carries the significance superscripts of `bench.evaluate.significance.marks` and the
legend under it; p-values go to `significance.csv` and the JSON. Files written (atomically) under
`results/<experiment>/`:

    leaderboard.md    all tables, legend, provenance line
    leaderboard.csv   one row per system, numeric scores (as before)
    significance.csv  one row per (baseline, system, dataset, measure): means, p, corrected p, d, CI
    leaderboard.json  everything above + provenance; validated against the JSON schema
    leaderboard.tex   booktabs tables ready for a paper (needs \\usepackage{booktabs})
"""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pandas as pd

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.evaluate.significance import legend as significance_legend
from bench.explain.summary import fmt_interval
from bench.report.crossdomain import Matrix, column_header, cross_domain_matrices, datasets_of, layout_tables
from bench.report.flags import LATEX as FLAG_LATEX
from bench.report.flags import all_marks
from bench.report.flags import legend_lines as flag_legend

SCHEMA_ID = "rerank-bench/leaderboard/v1"
_LATEX_MARKS = {"†": r"\dagger", "‡": r"\ddagger", "§": r"\S", "¶": r"\P", "♯": r"\sharp", "♮": r"\natural"}


def schema() -> dict:
    """The JSON schema of leaderboard.json (documented field by field)."""
    text = (resources.files("bench.report") / "schema" / "leaderboard.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def _fmt(v, mark: str = "", digits: int = 4) -> str:
    v = _num(v)
    return "–" if v is None else f"{v:.{digits}f}{mark}"


def legend(board) -> str:
    r = board.report
    text = significance_legend(r.get("baselines") or ["BM25"], r.get("test", "t-test"), r.get("correction", "holm"),
                               r.get("alpha", 0.05))
    return " ".join([text, *flag_legend(board.flags)])


def board_marks(board) -> dict:
    return all_marks(board)


def matrices(board) -> tuple[list[Matrix], list[Matrix]]:
    measure = board.report.get("matrix_measure", "nDCG@10")
    return cross_domain_matrices(board, measure), layout_tables(board, measure)


# ---------------------------------------------------------------- Markdown
def _main_markdown(board) -> str:
    mk = board_marks(board)
    multi = len(datasets_of(board)) > 1
    out = pd.DataFrame(index=board.table.index)
    out["params"] = [board.systems[s].params if s in board.systems else "" for s in board.table.index]
    for d, m in board.table.columns:
        out[f"{d} {m}" if multi else m] = [_fmt(board.table.loc[s, (d, m)], mk.get((s, d, m), ""))
                                           for s in board.table.index]
    for col, values in board.extra_columns.items():
        out[col] = [_fmt(values.get(s)) for s in board.table.index]
    for col, cells in board.explain_intervals.items():  # mean [95 % CI over queries]
        out[f"{col} [95% CI]"] = [fmt_interval(cells.get(s)) for s in board.table.index]
    out.index.name = "system"
    return out.to_markdown(disable_numparse=True)


def matrix_markdown(mat: Matrix, board) -> str:
    head = ["train \\ test" if mat.method else "system"] + [column_header(board, c) for c in mat.columns] + ["Avg."]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + [":---:"] * (len(head) - 1)) + "|"]
    for r in mat.rows:
        cells = []
        for c in mat.columns:
            text = _fmt(r.cells[c], r.marks.get(c, ""))
            cells.append(f"_{text}_" if c == r.in_domain else text)
        lines.append("| " + " | ".join([r.label] + cells + [_fmt(r.average)]) + " |")
    return "\n".join(lines)


def to_markdown(board, title: str) -> str:
    lines = [f"# {title}", "", _main_markdown(board), "", legend(board), ""]
    cross, layouts = matrices(board)
    for mat in layouts:
        lines += [f"## {mat.title} ({mat.measure})", "", matrix_markdown(mat, board), ""]
    for mat in cross:
        lines += [f"## Cross-domain: {mat.title} ({mat.measure}; rows: trained on, columns: tested on; "
                  f"in-domain in italics)", "", matrix_markdown(mat, board), "", legend(board), ""]
    return "\n".join(lines + board.footer_lines()) + "\n"


# ---------------------------------------------------------------- LaTeX (booktabs)
def _tex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
             "<": r"$<$", ">": r"$>$"}
    return "".join(table.get(ch, ch) for ch in str(text))


def _tex_cell(v, mark: str = "", best: bool = False, underline: bool = False) -> str:
    v = _num(v)
    if v is None:
        return "--"
    text = f"{v:.4f}"
    if best:
        text = rf"\textbf{{{text}}}"
    if underline:
        text = rf"\underline{{{text}}}"
    if mark:
        text += "$^{" + "".join({**_LATEX_MARKS, **FLAG_LATEX}.get(ch, "*") for ch in mark) + "}$"
    return text


def _tex_legend(board) -> str:
    text = _tex_escape(legend(board))
    for ch, cmd in {**_LATEX_MARKS, **FLAG_LATEX}.items():
        text = text.replace(ch, f"${cmd}$")
    return text


def main_latex(board, title: str) -> str:
    mk = board_marks(board)
    cols = list(board.table.columns)
    datasets = datasets_of(board)
    best = {c: board.table[c].max(skipna=True) for c in cols}
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule"]
    head1, rules, start = ["System"], [], 2
    for d in datasets:
        n = sum(1 for dd, _ in cols if dd == d)
        head1.append(rf"\multicolumn{{{n}}}{{c}}{{{_tex_escape(column_header(board, d))}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" & ".join(head1) + r" \\")
    lines.append(" ".join(rules))
    lines.append(" & ".join([""] + [_tex_escape(m) for _, m in cols]) + r" \\")
    lines.append(r"\midrule")
    for s in board.table.index:
        cells = [_tex_cell(board.table.loc[s, c], mk.get((s, *c), ""),
                           best=_num(board.table.loc[s, c]) is not None and board.table.loc[s, c] == best[c])
                 for c in cols]
        lines.append(" & ".join([_tex_escape(s)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(title)}. {_tex_legend(board)}}}",
              r"\end{table}"]
    return "\n".join(lines)


def matrix_latex(mat: Matrix, board) -> str:
    head = [(r"Train $\backslash$ test" if mat.method else "System")] + \
           [_tex_escape(column_header(board, c)) for c in mat.columns] + ["Avg."]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(mat.columns) + 1) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    for r in mat.rows:
        cells = [_tex_cell(r.cells[c], r.marks.get(c, ""), underline=c == r.in_domain) for c in mat.columns]
        lines.append(" & ".join([_tex_escape(r.label)] + cells + [_tex_cell(r.average)]) + r" \\")
    what = f"Cross-domain {mat.title}" if mat.method else mat.title
    note = " In-domain cells underlined." if mat.method else ""
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{{_tex_escape(what)} ({_tex_escape(mat.measure)}).{note} {_tex_legend(board)}}}",
              r"\end{table}"]
    return "\n".join(lines)


def to_latex(board, title: str) -> str:
    cross, layouts = matrices(board)
    parts = [f"% rerank-bench leaderboard; needs \\usepackage{{booktabs}}; config {board.provenance.get('config_hash')}",
             main_latex(board, title)]
    parts += [matrix_latex(m, board) for m in layouts + cross]
    if board.explain_intervals:
        parts.append(intervals_latex(board, title))
    return "\n\n".join(parts) + "\n"


def intervals_latex(board, title: str) -> str:
    """The faithfulness columns: mean and its 95 % bootstrap interval over queries, one row per explained system."""
    cols = list(board.explain_intervals)
    systems = [s for s in board.table.index if any(s in board.explain_intervals[c] for c in cols)]
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
             " & ".join(["System"] + [_tex_escape(c) for c in cols]) + r" \\", r"\midrule"]
    for s in systems:
        cells = []
        for c in cols:
            cell = board.explain_intervals[c].get(s)
            text = fmt_interval(cell)
            cells.append("--" if text == "–" else _tex_escape(text))
        lines.append(" & ".join([_tex_escape(s)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{{_tex_escape(title)}: explanation faithfulness of each system's primary explainer, mean of "
              r"per-query means [95\,\% percentile bootstrap interval resampling queries].}}", r"\end{table}"]
    return "\n".join(lines)


# ---------------------------------------------------------------- JSON
def to_json_dict(board, title: str) -> dict:
    from dataclasses import asdict

    mk = board_marks(board)
    flat = board.export_table()
    rows = []
    for system, row in flat.iterrows():
        rows.append({"system": system, **{k: (_num(v) if not isinstance(v, str) else v) for k, v in row.items()},
                     "info": asdict(board.systems[system]) if system in board.systems else {"name": system}})
    scores = [{"system": s, "dataset": d, "measure": m, "value": _num(board.table.loc[s, (d, m)]),
               "mark": mk.get((s, d, m), "")} for s in board.table.index for d, m in board.table.columns]
    sig = []
    if board.significance is not None:
        for rec in board.significance.to_dict("records"):
            sig.append({k: (_num(v) if isinstance(v, float) else v) for k, v in rec.items()})
    cross, layouts = matrices(board)

    def clean(m: Matrix) -> dict:
        d = m.to_dict()
        for r in d["rows"]:
            r["cells"] = {k: _num(v) for k, v in r["cells"].items()}
            r["average"] = _num(r["average"])
        return d

    report = {k: v for k, v in board.report.items()}
    report["legend"] = legend(board)
    return {"explain_intervals": board.explain_intervals,
            "schema": SCHEMA_ID, "title": title, "provenance": board.provenance, "report": report,
            "datasets": datasets_of(board), "rows": rows, "scores": scores, "significance": sig,
            "cross_domain": [clean(m) for m in cross], "layouts": [clean(m) for m in layouts],
            "extra_columns": {col: {s: _num(v) for s, v in values.items()} for col, values in board.extra_columns.items()},
            "truncation": board.truncation, "confidence_intervals": board.intervals, "listwise": board.listwise,
            "flags": [f.to_dict() for f in board.flags]}


def validate_json(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, schema())


# ---------------------------------------------------------------- all
def write_exports(board, out_dir: Path, title: str, stem: str = "leaderboard") -> dict[str, Path]:
    """Write every format named in report.exports (default all) plus significance.csv."""
    formats = board.report.get("exports") or ["md", "csv", "json", "latex"]
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    if "md" in formats:
        paths["md"] = write_text_atomic(out_dir / f"{stem}.md", to_markdown(board, title))
    if "csv" in formats:
        paths["csv"] = out_dir / f"{stem}.csv"
        write_text_atomic(paths["csv"], board.export_table().to_csv(float_format="%.6f"))
    paths["significance"] = out_dir / "significance.csv"
    sig = board.significance if board.significance is not None else pd.DataFrame()
    write_text_atomic(paths["significance"], sig.to_csv(index=False, float_format="%.6g"))
    if "json" in formats:
        doc = to_json_dict(board, title)
        validate_json(json.loads(json.dumps(doc)))  # never publish a file that breaks its own schema
        paths["json"] = out_dir / f"{stem}.json"
        write_json_atomic(paths["json"], doc)
    if "latex" in formats:
        paths["tex"] = out_dir / f"{stem}.tex"
        write_text_atomic(paths["tex"], to_latex(board, title))
    return {k: Path(v) for k, v in paths.items()}
