"""The static leaderboard site, opened from file:// in a real headless Chromium (Debian `chromium`,
driven by Playwright): a header click sorts, a filter hides rows, the plots render, and a
screenshot is saved under results/site/."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.config import DemoSource, Experiment, RetrieveConfig
from bench.data.collection import Run
from bench.data.loaders import load_demo
from bench.evaluate.ir import per_query
from bench.provenance import stamp
from bench.report.leaderboard import Leaderboard
from bench.systems import SystemInfo
from bench.report.stage import add_significance
from bench.retrieve.bm25 import bm25_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _write_demo_experiment(results: Path) -> Path:
    """A real experiment folder: demo set, BM25, BM25 with other parameters, BM25 reversed, a plot."""
    col = load_demo(DemoSource(name="envri-demo", loader="demo"))
    half = sorted(col.queries)[:16]
    runs = {"BM25": bm25_run(col, RetrieveConfig(depth=10), show_progress=False),
            "bm25-k1.5": bm25_run(col, RetrieveConfig(depth=10, k1=1.5, b=0.9), show_progress=False)}
    runs["reversed"] = Run("reversed", {q: {d: -s for d, s in docs.items()} for q, docs in runs["BM25"].scores.items()})
    # two "datasets" (halves of the demo queries) so the dataset filter has something to hide
    pq = pd.concat([per_query(run, col.qrels, ["nDCG@10", "RR(rel=5)"], ds, qids, system=name)
                    for name, run in runs.items()
                    for ds, qids in (("demo-a", half), ("demo-b", sorted(set(col.queries) - set(half))))],
                   ignore_index=True)
    systems = {"BM25": SystemInfo("BM25", kind="first-stage"),
               "bm25-k1.5": SystemInfo("bm25-k1.5", kind="trained", family="bm25", method="grid",
                                       train_dataset="demo-a"),
               "reversed": SystemInfo("reversed", kind="zero-shot", family="bm25")}
    exp = Experiment.model_validate({"name": "demo-site", "data": [{"name": "demo-a", "loader": "demo"},
                                                                   {"name": "demo-b", "loader": "demo"}],
                                     "report": {"bootstrap_resamples": 100}})
    board = Leaderboard.from_per_query(pq, systems, stamp(exp.hash(), exp.seed), measures=["nDCG@10", "RR(rel=5)"])
    add_significance(board, pq, exp)
    board.extra_columns["faithfulness"] = {"bm25-k1.5": 0.25}  # a per-system column as the explain stage adds
    out = results / exp.name
    board.write(out, "Leaderboard: demo-site")
    import json

    (out / "table1.json").write_text(json.dumps({"title": "Table 1: demo-site", "table": {
        "columns": ["method", "LLaMA-tiny"], "rows": [["sft", "0.693 / 0.412 → 0.554"]]}}))
    pq.to_csv(out / "per_query.csv", index=False)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    means = board.table[("demo-a", "nDCG@10")]
    ax.barh(list(means.index), list(means.values))
    ax.set_xlabel("nDCG@10")
    (out / "figures").mkdir()
    fig.savefig(out / "figures" / "ndcg.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`rerank-bench leaderboard CONFIG --html results/site` over a results folder with two experiments."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("site")
    results = tmp / "results"
    _write_demo_experiment(results)
    cfg = tmp / "bm25-only.yaml"
    cfg.write_text(yaml.safe_dump({"name": "bm25-only", "results_dir": str(results),
                                   "data": [{"name": "envri-demo", "loader": "demo"}],
                                   "evaluate": {"measures": ["nDCG@10"]}}))
    res = run_cli("leaderboard", cfg, "--html", results / "site")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "site: " in res.stdout and "(2 experiment page(s))" in res.stdout
    return results / "site"


def test_site_files_are_self_contained(site):
    page = (site / "demo-site" / "index.html").read_text()
    assert (site / "index.html").is_file() and (site / ".nojekyll").is_file()
    for f in ("per_query.csv", "leaderboard.json", "leaderboard.tex", "significance.csv", "plots/figures/ndcg.png"):
        assert (site / "demo-site" / f).is_file(), f
        assert f'href="{f}"' in page or f'src="{f}"' in page
    # no server, no CDN: nothing is fetched from elsewhere
    # (an inline SVG's xmlns names are identifiers, not fetches, so only src/href/url() count)
    fetched = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//|url\(\s*["\']?(?:https?:)?//|@import', page)
    assert not fetched, fetched
    assert "<script src" not in page and '<link rel="stylesheet"' not in page
    assert (site / "bm25-only" / "index.html").is_file()
    assert '<table id="extra"' in page and "faithfulness" in page and "0.2500" in page
    # the leaderboard as a chart (inline SVG: each system's nDCG@10 with its bootstrap interval) and Table 1
    assert '<figure class="chart"' in page and "<svg" in page and "bootstrap confidence interval" in page
    assert "Table 1: demo-site" in page and "0.693 / 0.412 → 0.554" in page
    # measures in the order the config gives them (nDCG@10 first), not alphabetically
    head = page[page.index('<table id="scores"'):]
    assert head.index(">nDCG@10<") < head.index(">RR(rel=5)<")


def test_page_sorts_filters_and_renders_plots_in_headless_chromium(site):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed (/usr/bin/chromium); `apt-get install -y chromium` (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((site / "index.html").as_uri())
            assert page.locator("#experiments tbody tr").count() == 2
            page.click("a[href='demo-site/index.html']")
            assert page.url.startswith("file://") and page.url.endswith("demo-site/index.html")

            rows = page.locator("#scores tbody tr")
            assert rows.count() == 6  # 3 systems x 2 datasets
            col = page.locator("#scores thead th").all_inner_texts().index("nDCG@10") + 1
            cells = f"#scores tbody tr td:nth-child({col})"
            page.locator("#scores thead th", has_text="nDCG@10").click()
            asc = [float(v.rstrip("†")) for v in page.locator(cells).all_inner_texts()]
            assert asc == sorted(asc) and asc != [float(v.rstrip("†")) for v in
                                                  _document_order(site, "nDCG@10")]
            page.locator("#scores thead th", has_text="nDCG@10").click()
            desc = [float(v.rstrip("†")) for v in page.locator(cells).all_inner_texts()]
            assert desc == sorted(asc, reverse=True)
            assert page.locator("#scores thead th", has_text="nDCG@10").get_attribute("aria-sort") == "descending"

            # the reversed ranking is significantly worse than BM25: a superscript in the table
            assert page.locator("#scores sup.sig").count() >= 2
            assert "differs significantly from BM25" in page.locator("p.legend").first.inner_text()

            page.select_option("#filter-dataset", "demo-b")
            assert page.locator("#scores tbody tr:visible").count() == 3
            assert set(page.locator("#scores tbody tr:visible td:nth-child(7)").all_inner_texts()) == {"demo-b"}
            page.select_option("#filter-method", "grid")
            assert page.locator("#scores tbody tr:visible").count() == 1
            assert page.locator("#row-count").inner_text() == "1 rows"
            page.select_option("#filter-dataset", "")
            page.select_option("#filter-method", "")

            chart = page.locator("#chart svg")
            assert chart.count() == 1 and chart.bounding_box()["height"] > 50

            imgs = page.locator("img")
            assert imgs.count() == 1
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            assert imgs.first.evaluate("i => i.naturalWidth") > 0
            shot = site / "demo-site.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()


def _document_order(site: Path, measure: str) -> list[str]:
    """nDCG@10 values in the order the page lists them before any sorting."""
    import json

    doc = json.loads((site / "demo-site" / "leaderboard.json").read_text())
    order = []
    for s in doc["scores"]:
        if s["measure"] == measure:
            order.append(f"{s['value']:.4f}")
    return order


def test_rebuilding_drops_plots_that_are_gone(site):
    results = site.parent
    shutil.rmtree(results / "demo-site" / "figures")
    from bench.report.site import build_site

    build_site(results, site)
    assert not (site / "demo-site" / "plots").exists()
    assert "<img" not in (site / "demo-site" / "index.html").read_text()
