"""Static leaderboard site: an index of every experiment under results/, one page per experiment.

Built only from files the pipeline already wrote (`results/<experiment>/leaderboard.json`,
`per_query.csv`, `significance.csv`, `*.png` plots), so it can be rebuilt at any time without
rerunning anything. Pages are self-contained (inline CSS and JS, no CDN, no server): they work
from a file:// URL and on GitHub Pages (a `.nojekyll` marker is written).

    site/index.html                 experiments, sortable
    site/<experiment>/index.html    scores (sortable, filters by dataset/method/system), BEIR/BRIGHT
                                    layouts, cross-domain matrices, significance, plots, downloads
    site/<experiment>/per_query.csv ... copies of the experiment's result files
    site/<experiment>/plots/...     copies of its PNG plots
"""
from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path

from bench.artifacts import write_text_atomic
from bench.report.crossdomain import BRIGHT_DOMAINS, _bright_key

log = logging.getLogger("bench")

DOWNLOADS = [("per_query.csv", "per-query results (CSV)"), ("leaderboard.csv", "leaderboard (CSV)"),
             ("significance.csv", "p-values (CSV)"), ("leaderboard.json", "leaderboard (JSON)"),
             ("leaderboard.md", "Markdown"), ("leaderboard.tex", "LaTeX (booktabs)")]
MAX_PLOTS = 60


def _template(name: str) -> str:
    return (resources.files("bench.report") / "templates" / name).read_text(encoding="utf-8")


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FunctionLoader(_template), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def find_experiments(results_root: Path, site_dir: Path) -> list[Path]:
    """Experiment folders: direct children of results_root holding a schema-v1 leaderboard.json."""
    site = site_dir.resolve()
    found = []
    for d in sorted(Path(results_root).iterdir() if Path(results_root).is_dir() else []):
        if not d.is_dir() or d.resolve() == site or site in d.resolve().parents:
            continue
        lb = d / "leaderboard.json"
        if lb.is_file():
            try:
                doc = json.loads(lb.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                log.warning("site: skipping %s (not valid JSON)", lb)
                continue
            if doc.get("schema") == "rerank-bench/leaderboard/v1":
                found.append(d)
            else:
                log.warning("site: skipping %s (written before the v1 schema; rerun `leaderboard`)", lb)
    return found


def _plots(exp_dir: Path, page_dir: Path, site: Path) -> list[dict]:
    plots = []
    for png in sorted(exp_dir.rglob("*.png")):
        rel = png.relative_to(exp_dir)
        if any(part.startswith(".") for part in rel.parts) or site in png.resolve().parents:
            continue
        dest = page_dir / "plots" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, dest)
        plots.append({"src": f"plots/{rel.as_posix()}", "caption": rel.as_posix()})
        if len(plots) >= MAX_PLOTS:
            log.warning("site: %s has more than %d plots; showing the first %d", exp_dir.name, MAX_PLOTS, MAX_PLOTS)
            break
    return plots


def _method_label(info: dict) -> str:
    return info.get("method") or info.get("kind") or "?"


TABLE_FILES = ("table1.json", "r2r_table1.json", "r2r_table3.json", "r2r_table5.json", "r2r_cost.json",
               "explainability.json", "topk.json", "tune/variance.json")


def _tables(exp_dir: Path) -> list[dict]:
    """Tables other stages wrote beside the leaderboard (Table 1, the R2R tables), as {title, columns, rows}."""
    out = []
    for name in TABLE_FILES:
        path = exp_dir / name
        if path.is_file():
            doc = json.loads(path.read_text(encoding="utf-8"))
            if "table" in doc:
                out.append({"title": doc.get("title", name), "note": doc.get("legend", ""), **doc["table"]})
    return out


def explainer_section(exp_dir: Path) -> dict | None:
    """The explainer x metric table and the cost-vs-faithfulness chart, from explanations.json."""
    path = exp_dir / "explanations.json"
    if not path.is_file():
        return None
    from bench.report.explainers import cost_faithfulness_svg, site_table

    metrics = json.loads(path.read_text(encoding="utf-8"))
    table = site_table(metrics)
    return None if table is None else {"table": table, "chart": cost_faithfulness_svg(metrics)}


def experiment_page(doc: dict, plots: list[dict], downloads: list[dict], tables: list[dict] | None = None,
                    explainers: dict | None = None) -> str:
    from bench.explain.summary import fmt_interval
    from bench.report.figures import leaderboard_chart_svg

    infos = {r["system"]: r.get("info", {}) for r in doc["rows"]}
    measures: list[str] = []
    for s in doc["scores"]:
        if s["measure"] not in measures:
            measures.append(s["measure"])
    best: dict[tuple[str, str], float] = {}
    for s in doc["scores"]:
        if s["value"] is not None:
            key = (s["dataset"], s["measure"])
            best[key] = max(best.get(key, float("-inf")), s["value"])
    rows: dict[tuple[str, str], dict] = {}
    for s in doc["scores"]:
        info = infos.get(s["system"], {})
        row = rows.setdefault((s["system"], s["dataset"]), {
            "system": s["system"], "dataset": s["dataset"], "kind": info.get("kind", ""),
            "family": info.get("family", ""), "method": _method_label(info), "params": info.get("params", ""),
            "train_dataset": info.get("train_dataset", ""), "cells": {}})
        row["cells"][s["measure"]] = {"value": s["value"], "mark": s["mark"],
                                      "best": s["value"] is not None and s["value"] == best.get((s["dataset"], s["measure"]))}
    methods = sorted({r["method"] for r in rows.values()})
    domains = doc["report"].get("bright_domains", {})

    def header(d: str) -> str:
        return BRIGHT_DOMAINS.get(_bright_key(domains[d]), d) if d in domains else d

    def prep(mat: dict, cross: bool) -> dict:
        systems = [r["system"] for r in mat["rows"]]
        return {**mat, "headers": [header(c) for c in mat["columns"]],
                "methods": sorted({_method_label(infos.get(s, {})) for s in systems}),
                "heading": (f"Cross-domain: {mat['title']} ({mat['measure']})" if cross
                            else f"{mat['title']} ({mat['measure']})")}

    sig_rows = [{**s, "method_label": _method_label(infos.get(s["system"], {}))} for s in doc["significance"]]
    extra = doc.get("extra_columns") or {}
    extra_rows = [{"system": r["system"], "cells": [extra[c].get(r["system"]) for c in extra]} for r in doc["rows"]
                  if any(extra[c].get(r["system"]) is not None for c in extra)]
    intervals = doc.get("explain_intervals") or {}
    interval_rows = [{"system": r["system"],
                      "cells": [(intervals[c].get(r["system"]) or {}).get("mean") for c in intervals],
                      "text": [fmt_interval(intervals[c].get(r["system"])) for c in intervals]} for r in doc["rows"]
                     if any(r["system"] in intervals[c] for c in intervals)]
    return _env().get_template("experiment.html").render(
        title=doc["title"], prov=doc["provenance"], report=doc["report"], legend=doc["report"]["legend"],
        datasets=doc["datasets"], methods=methods, measures=measures, score_rows=list(rows.values()),
        layouts=[prep(m, False) for m in doc["layouts"]], cross=[prep(m, True) for m in doc["cross_domain"]],
        sig_rows=sig_rows, extra_columns=list(extra), extra_rows=extra_rows, plots=plots, downloads=downloads,
        chart=leaderboard_chart_svg(doc), tables=tables or [], css=_template("site.css"), js=_template("site.js"),
        interval_columns=list(intervals), interval_rows=interval_rows, explainers=explainers)


def build_site(results_root: Path, site_dir: Path) -> list[Path]:
    """Write the site; returns the pages written (index first)."""
    results_root, site_dir = Path(results_root), Path(site_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    site = site_dir.resolve()
    pages, index_rows = [], []
    for exp_dir in find_experiments(results_root, site_dir):
        doc = json.loads((exp_dir / "leaderboard.json").read_text(encoding="utf-8"))
        page_dir = site_dir / exp_dir.name
        if (page_dir / "plots").is_dir():  # plots removed from the experiment must vanish from its page
            shutil.rmtree(page_dir / "plots")
        page_dir.mkdir(parents=True, exist_ok=True)
        downloads = []
        for name, label in DOWNLOADS:
            if (exp_dir / name).is_file():
                shutil.copy2(exp_dir / name, page_dir / name)
                downloads.append({"href": name, "label": label})
        plots = _plots(exp_dir, page_dir, site)
        pages.append(write_text_atomic(page_dir / "index.html", experiment_page(doc, plots, downloads,
                                                                                _tables(exp_dir),
                                                                                explainer_section(exp_dir))))
        measure = doc["report"].get("matrix_measure", "nDCG@10")
        avg: dict[str, list[float]] = {}
        for s in doc["scores"]:
            if s["measure"] == measure and s["value"] is not None:
                avg.setdefault(s["system"], []).append(s["value"])
        means = {k: sum(v) / len(v) for k, v in avg.items()}
        top = max(means, key=means.get) if means else None
        index_rows.append({"name": exp_dir.name, "href": f"{exp_dir.name}/index.html", "datasets": doc["datasets"],
                           "n_systems": len(doc["rows"]), "best": top, "best_score": means.get(top),
                           "created": doc["provenance"].get("created", ""),
                           "config_hash": doc["provenance"].get("config_hash", "")})
        log.info("site: %s (%d plots)", page_dir / "index.html", len(plots))
    index = _env().get_template("index.html").render(experiments=index_rows, root=str(results_root),
                                                     measure="nDCG@10", css=_template("site.css"),
                                                     js=_template("site.js"))
    pages.insert(0, write_text_atomic(site_dir / "index.html", index))
    (site_dir / ".nojekyll").touch()
    for f in site_dir.rglob("*"):  # atomic writes create 0600 files; a web server must be able to read them
        if f.is_file():
            f.chmod(0o644)
    return pages
