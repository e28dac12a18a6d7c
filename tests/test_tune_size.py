"""Model-size ablation: one method across widths of one family, nDCG@10 and faithfulness against
parameter count (slow: two training trials plus KernelSHAP per size)."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli


def _wider_llama(tmp_path, hidden: int) -> str:
    """A tiny-llama of another width (same tokenizer), random-init: a second 'size' of the family."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from bench.models import resolve_model

    base = resolve_model("tiny-llama")
    cfg = AutoConfig.from_pretrained(base)
    cfg.hidden_size, cfg.intermediate_size = hidden, hidden * 2
    cfg.head_dim = hidden // cfg.num_attention_heads
    out = tmp_path / f"llama-h{hidden}"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_size_ablation_plots_ndcg_and_faithfulness_against_parameters(write_config, tmp_path):
    wide = _wider_llama(tmp_path, 128)
    path = write_config({
        "name": "size", "seed": 3, "data": [{"name": "envri-demo", "loader": "demo", "max_queries": 12}],
        "splits": {"scheme": "random", "train": 0.5, "valid": 0.25, "test": 0.25},
        "retrieve": {"depth": 10}, "rerank": {"depth": 5}, "evaluate": {"measures": ["nDCG@10"], "split": "test"},
        "explain": {"k": 3, "nsamples": 16, "batch_size": 32},
        "tune": {"train": {"models": [{"model": "tiny-llama"}], "methods": ["sft"], "prompt": "plain",
                           "hyper": {"max_steps": 2, "batch_size": 2, "max_length": 128, "logging_steps": 1}},
                 "report_every": 2, "max_concurrent_trials": 1,
                 "size": {"models": [{"model": "tiny-llama", "name": "h64"}, {"model": wide, "name": "h128"}],
                          "method": "sft", "faithfulness_items": 2}}})
    proc = run_cli("tune", path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results" / "size"
    df = pd.read_csv(out / "size.csv")
    assert list(df["model"]) == ["h64", "h128"]  # sorted by parameter count
    assert df["params"].iloc[0] < df["params"].iloc[1]
    assert df["valid_nDCG@10"].between(0, 1).all() and df["comprehensiveness"].notna().all()
    assert (out / "size.png").read_bytes()[:4] == b"\x89PNG"
    assert "| h128 |" in (out / "size.md").read_text()
