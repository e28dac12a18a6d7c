"""The leaderboard: one row per system (BM25 first), one column per (dataset, measure).

Written as Markdown, CSV and JSON under `results/<experiment>/`, every file stamped with the
config hash, package versions, git commit, data checksums and seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.artifacts import write_json_atomic, write_text_atomic
from bench.systems import SystemInfo  # noqa: F401 - re-exported for the report layer


@dataclass
class Leaderboard:
    """Aggregated scores plus per-system metadata, ready to export."""

    table: pd.DataFrame  # index: system; columns: MultiIndex (dataset, measure)
    systems: dict[str, SystemInfo]
    provenance: dict
    extra_columns: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. faithfulness per system
    # columns with intervals (bench.explain.summary.interval_columns): column -> system -> {mean, ci_low, ci_high,
    # n_queries, n_items}: the primary explainer's comp@k, suff@k, AOPC comp / suff, grounding@k
    explain_intervals: dict[str, dict[str, dict]] = field(default_factory=dict)
    # Paired tests against the baselines (bench.evaluate.significance.COLUMNS) and how they were run:
    # {"baselines", "test", "correction", "alpha", "matrix_measure", "loaders": {dataset: loader}}.
    significance: pd.DataFrame | None = None
    report: dict = field(default_factory=dict)
    # system -> dataset -> {pairs, query_cut, item_cut, any_cut, dtype, max_length} (re-ranked systems)
    truncation: dict = field(default_factory=dict)
    # system -> dataset -> {measure, mean, low, high, n}: bootstrap CI of report.ci_measure (the site's chart)
    intervals: dict = field(default_factory=dict)
    # listwise LLM systems: system -> dataset -> {totals, per_query} (calls, tokens, cost, latency, id errors)
    listwise: dict = field(default_factory=dict)
    # marks on scores that are not what they seem (bench.report.flags.Flag): repaired listwise answers,
    # systems evaluated on their training queries; shown in every table and explained in the legend
    flags: list = field(default_factory=list)

    @classmethod
    def from_per_query(cls, per_query: pd.DataFrame, systems: dict[str, SystemInfo], provenance: dict,
                       baseline: str = "BM25", measures: list[str] | None = None) -> "Leaderboard":
        agg = per_query.groupby(["system", "dataset", "measure"], sort=False)["value"].mean()
        table = agg.unstack(["dataset", "measure"]) if len(agg) else pd.DataFrame()
        if len(table.columns):  # columns in the order of the data sources and of the config's measures
            from bench.evaluate.ir import measure_order

            datasets = list(dict.fromkeys(per_query["dataset"]))
            rank = measure_order(measures or [])
            table = table[sorted(table.columns, key=lambda c: (datasets.index(c[0]), rank(c[1])))]
        order = [baseline] if baseline in table.index else []
        order += [s for s in systems if s in table.index and s not in order]
        order += [s for s in table.index if s not in order]
        table = table.reindex(order)
        for name, info in systems.items():  # failed systems still get their row
            if info.status != "ok" and name not in table.index:
                table.loc[name] = float("nan")
        return cls(table, systems, provenance)

    def flat(self) -> pd.DataFrame:
        """Flat table with metadata columns, as written to CSV and Markdown."""
        datasets = {d for d, _ in self.table.columns}
        flat = self.table.copy()
        flat.columns = [m if len(datasets) == 1 else f"{d} {m}" for d, m in self.table.columns]
        for col, values in self.extra_columns.items():
            flat[col] = [values.get(s, float("nan")) for s in flat.index]
        meta = pd.DataFrame({
            "params": [self.systems.get(s, SystemInfo(s)).params for s in flat.index],
            "status": [self.systems.get(s, SystemInfo(s)).status for s in flat.index],
        }, index=flat.index)
        if self.flags:
            meta["flags"] = ["; ".join(f"{f.symbol} {f.note}" for f in self.flags if f.system == s) for s in flat.index]
        out = pd.concat([meta, flat], axis=1)
        out.index.name = "system"
        return out

    def console_table(self) -> str:
        """The scores (no explanation columns) as a compact table for the end of a run."""
        flat = self.flat()
        cols = ["params"] + [c for c in flat.columns if c not in ("params", "status", "flags")
                             and c not in self.extra_columns]
        shown = flat[cols].astype(object)
        for s in shown.index:
            if self.systems.get(s, SystemInfo(s)).status != "ok":
                shown.loc[s, cols[1:]] = "failed"
            else:
                shown.loc[s, cols[1:]] = [f"{v:.4f}" if isinstance(v, float) else v for v in shown.loc[s, cols[1:]]]
        from bench.report.flags import symbols

        flagged: dict[str, str] = {}
        for (system, _), marks in symbols(self.flags).items():  # the legend is in leaderboard.md
            flagged[system] = flagged.get(system, "") + marks
        shown.index = [f"{s} {flagged[s]}" if s in flagged else s for s in shown.index]
        return shown.to_markdown()

    def to_markdown(self, title: str) -> str:
        if self.significance is not None:  # marked tables, legend, BEIR/BRIGHT layouts, cross-domain matrices
            from bench.report.export import to_markdown

            return to_markdown(self, title)
        lines = [f"# {title}", "", self.flat().to_markdown(floatfmt=".4f"), ""]
        return "\n".join(lines + self.footer_lines()) + "\n"

    def footer_lines(self) -> list[str]:
        """Failed systems with their errors, then the provenance line: the end of every Markdown export."""
        lines = []
        failed = [f"- {name}: failed: {info.error}" for name, info in self.systems.items() if info.status != "ok"]
        if failed:
            lines += ["Failed systems:", *failed, ""]
        prov = self.provenance
        lines.append(f"config {prov.get('config_hash')} · seed {prov.get('seed')} · "
                     f"rerank-bench {prov.get('versions', {}).get('rerank-bench')} · "
                     f"commit {str(prov.get('git_commit'))[:10]}")
        return lines

    def write(self, out_dir: Path, title: str, stem: str = "leaderboard") -> dict[str, Path]:
        if self.significance is not None:  # every export format of bench.report.export
            from bench.report.export import write_exports

            return write_exports(self, Path(out_dir), title, stem)
        out_dir = Path(out_dir)
        flat = self.flat()
        paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json"}
        write_text_atomic(paths["md"], self.to_markdown(title))
        write_text_atomic(paths["csv"], flat.to_csv(float_format="%.6f"))
        rows = []
        for system, row in flat.iterrows():
            rows.append({"system": system, **{k: (None if pd.isna(v) else v) for k, v in row.items()},
                         "info": vars(self.systems.get(system, SystemInfo(system)))})
        write_json_atomic(paths["json"], {"title": title, "provenance": self.provenance, "rows": rows})
        return paths

    def export_table(self) -> pd.DataFrame:
        """`flat()` plus the columns with intervals (mean, then `<column> ci_low` / `ci_high`): leaderboard.csv and
        the JSON rows."""
        flat = self.flat()
        for col, cells in self.explain_intervals.items():
            for suffix, key in (("", "mean"), (" ci_low", "ci_low"), (" ci_high", "ci_high")):
                flat[col + suffix] = [(cells.get(s) or {}).get(key) for s in flat.index]
                flat[col + suffix] = flat[col + suffix].astype(float)
        return flat
