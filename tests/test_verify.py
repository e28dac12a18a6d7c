"""Score regression like Pyserini's two-click reproductions: `rerank-bench verify` reruns the
experiment and prints OK / within tolerance / FAIL per condition, exit 1 on FAIL."""
from __future__ import annotations

import yaml

from conftest import ROOT


def test_verify_bm25_prints_ok_for_scifact_and_dl19(shared_data, cli, tmp_path):
    res = cli("verify", ROOT / "configs" / "verify-bm25.yaml", "--set", f"results_dir={tmp_path}")
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert any(line.startswith("OK") and "scifact BM25 nDCG@10: 0.676" in line for line in lines), res.stdout
    assert any(line.startswith("OK") and "dl19 BM25 nDCG@10: 0.5058" in line for line in lines), res.stdout
    assert "published 0.6789" in res.stdout
    # R2R Table 5's BM25 "NDCG@5" of 50.6 on DL19 is BM25's nDCG@10: its nDCG@5 is 0.5278
    assert any(line.startswith("OK") and "dl19 BM25 nDCG@5: 0.5278" in line and "published 0.5060" in line
               for line in lines), res.stdout
    assert "3 passed, 0 failed" in res.stdout

    # Against the published SciFact number ours is only within tolerance; a wrong number FAILs (exit 1).
    expected = tmp_path / "expected.yaml"
    expected.write_text(yaml.safe_dump({"conditions": [
        {"dataset": "scifact", "system": "BM25", "measure": "nDCG@10", "expected": 0.6789, "tolerance": 0.005},
        {"dataset": "dl19", "system": "BM25", "measure": "nDCG@10", "expected": 0.52, "tolerance": 0.005},
    ]}))
    res = cli("verify", ROOT / "configs" / "verify-bm25.yaml", "--set", f"results_dir={tmp_path}",
              "--expected", expected)
    assert res.returncode == 1, res.stdout + res.stderr[-2000:]
    assert "within tolerance scifact BM25 nDCG@10: 0.6762" in res.stdout
    assert "FAIL             dl19 BM25 nDCG@10: 0.5058 (expected 0.5200" in res.stdout
    assert "1 passed, 1 failed" in res.stdout


def test_a_condition_naming_an_unknown_dataset_is_an_input_error_before_any_work(cli, write_config, tmp_path):
    cfg = write_config({"name": "v", "data": [{"name": "envri-demo", "loader": "demo"}],
                        "evaluate": {"measures": ["nDCG@10"]},
                        "report": {"expected": [{"dataset": "scifact", "system": "BM25", "measure": "nDCG@10",
                                                 "expected": 0.5}]}})
    res = cli("verify", cfg)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith(
        f"rerank-bench: error: {cfg} (report.expected): conditions.0.dataset: 'scifact' is not a data source")
    assert not (tmp_path / "results" / "v").exists()
    missing = write_config({"name": "w", "data": [{"name": "envri-demo", "loader": "demo"}]}, name="w.yaml")
    res = cli("verify", missing)
    assert res.returncode == 2 and "no expected scores" in res.stderr
