"""`rerank-bench` subcommands of the report stage: `leaderboard` (tables, exports, static site) and
`verify` (score regression against expected numbers)."""
from __future__ import annotations

from bench.cli import command, pipeline_from_args


def _leaderboard_args(sp) -> None:
    sp.add_argument("--html", metavar="DIR", default=None,
                    help="also build the static site in DIR (e.g. results/site/): an index of every experiment "
                         "under the results folder and one page per experiment; open DIR/index.html")


@command("leaderboard", "write results/<experiment>/leaderboard.{md,csv,json,tex} and significance.csv "
                        "(paired tests vs the baselines); --html DIR builds the static site",
         add_args=_leaderboard_args)
def cmd_leaderboard(args) -> int:
    from pathlib import Path

    from bench.errors import InputError, require_writable_dir

    if args.html:  # checked before any work: the site is a folder of pages
        html = Path(args.html)
        if html.exists() and not html.is_dir():
            raise InputError(f"--html: {html} exists and is not a directory; give a folder for the site's pages")
        require_writable_dir(html, "--html")
    p = pipeline_from_args(args)
    board = p.leaderboard()
    print(board.to_markdown(f"Leaderboard: {p.exp.name}"))
    if args.html:
        from bench.report.site import build_site

        pages = build_site(Path(p.exp.results_dir), Path(args.html))
        print(f"site: {pages[0]} ({len(pages) - 1} experiment page(s))")
    print(p.summary())
    return 0


def _verify_args(sp) -> None:
    sp.add_argument("--expected", metavar="YAML", default=None,
                    help="expected scores (`conditions:` list of dataset, system, measure, expected, tolerance); "
                         "default: report.expected in the config, else report.expected_file, else "
                         "<config dir>/expected/<config name>.yaml")


@command("verify", "rerun the experiment (cached stages are reused) and check its scores against expected "
                   "values: prints OK / within tolerance / FAIL per condition; exit 1 on any FAIL",
         add_args=_verify_args)
def cmd_verify(args) -> int:
    from bench.report.verify import check, load_conditions

    p = pipeline_from_args(args)
    conditions, source = load_conditions(p.exp, args.config, args.expected)
    board = p.leaderboard()
    results = check(board, conditions)
    print(f"verify {p.exp.name}: {len(conditions)} condition(s) from {source}")
    for r in results:
        print(r.line())
    failed = sum(r.status == "FAIL" for r in results)
    print(f"{len(results) - failed} passed, {failed} failed" + ("" if failed else " (all OK or within tolerance)"))
    return 1 if failed else 0
