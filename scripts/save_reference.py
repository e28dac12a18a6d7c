"""Copy a finished experiment's small result files into results/reference/<experiment>/ with a
PROVENANCE.md, so a reader can check the numbers the README quotes.

    python scripts/save_reference.py EXPERIMENT --command "rerank-bench run configs/x.yaml" [--console FILE]

Copies what is small and what the README cites (leaderboard md/json/csv/tex, significance, Table 1,
R2R tables, the explainer comparison and its summary, explainability per method, the top-k ablation,
the resolved config); the provenance (commit, config hash, seed, data checksums,
library versions) comes from leaderboard.json, where every run records it.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

FILES = ("leaderboard.md", "leaderboard.json", "leaderboard.csv", "significance.csv", "table1.md", "table1.json",
         "r2r_table1.md", "r2r_table1.json", "r2r_table3.md", "r2r_table3.json", "r2r_table5.md", "r2r_table5.json",
         "r2r_cost.md", "r2r_cost.json", "config.resolved.json",
         # the explain stage's explainer comparison, explainability per training method, the top-k ablation
         "explainers.md", "explanations.json", "summary.json", "explainability.md", "explainability.csv",
         "explainability.json", "topk.md", "topk.csv", "topk.json", "topk.png", "leaderboard.tex")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--command", required=True, help="the command that produced the results")
    parser.add_argument("--console", type=Path, help="the command's console output, kept as console.txt")
    parser.add_argument("--note", default="", help="a sentence on the machine or the run")
    args = parser.parse_args(argv)
    src = args.results / args.experiment
    board = src / "leaderboard.json"
    if not board.is_file():
        print(f"save_reference: {board} not found; run the experiment first", file=sys.stderr)
        return 2
    dst = args.results / "reference" / args.experiment
    dst.mkdir(parents=True, exist_ok=True)
    copied = [name for name in FILES if (src / name).is_file()]
    for name in copied:
        shutil.copy2(src / name, dst / name)
    if args.console:
        shutil.copy2(args.console, dst / "console.txt")
        copied.append("console.txt")
    prov = json.loads(board.read_text())["provenance"]
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    lines = [f"# Reference results: {args.experiment}", "",
             f"- command: `{args.command}`",
             f"- created: {prov.get('created')}; git commit {prov.get('git_commit')}",
             f"- config hash {prov.get('config_hash')}, seed {prov.get('seed')}",
             f"- data checksums: {json.dumps(prov.get('data_checksums', {}))}",
             f"- machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}"
             + (f"; {args.note}" if args.note else ""),
             f"- versions: {versions}",
             f"- files: {', '.join(copied)}", "",
             "The numbers are the harness's output, copied unchanged from results/" + args.experiment + "/."]
    (dst / "PROVENANCE.md").write_text("\n".join(lines) + "\n")
    print(f"saved {len(copied)} files to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
