"""Methods that used to fail late or train in the wrong space (issue 18, item 7), each trained for real
with its trl trainer on the tiny preset, in-process."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from test_trust import _cells

TINY = "tiny-qwen2"


def test_ppo_trains_on_a_fully_fine_tuned_reward_model(tmp_path):
    """A fully fine-tuned RM cell is saved whole under `model/`; PPO used to read `<rm>/adapter` and fail
    after the RM had trained. Now PPO scores with the RM's `model/` and trains."""
    from bench.train.methods import reward_model_source, train_cell

    cells, configs = _cells(tmp_path, steps=2, lr=0.002, full_finetune=True)
    by_method = {c.method: configs[c.key] for c in cells}
    _, rm_dir = train_cell(by_method["rm"], Path(tempfile.mkdtemp(dir=tmp_path)), None, None, 0, 1)
    assert (rm_dir / "model").is_dir() and not (rm_dir / "adapter").exists()
    ppo = by_method["ppo"]
    ppo = {**ppo, "rm": {**ppo["rm"], **reward_model_source(rm_dir, ppo["rm"]["model"])}}
    metrics, final = train_cell(ppo, Path(tempfile.mkdtemp(dir=tmp_path)), None, None, 0, 1)
    assert metrics["steps"] == 2 and (final / "model").is_dir()


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_a_separate_kl_reference_acts_in_the_two_token_space(tmp_path, method):
    """Without LoRA, RLOO builds its KL reference as a fresh copy of the model: it lacked the hook that
    keeps the policy on "yes" / "no", so the KL compared distributions over different spaces."""
    import torch

    from bench.rerank import prompts
    from bench.train.methods import build_trainer

    cells, configs = _cells(tmp_path, steps=1, lr=0.002, full_finetune=True, rl_generations=2)
    cfg = next(configs[c.key] for c in cells if c.method == method)
    from transformers import TrainerCallback

    trainer, tok = build_trainer(cfg, str(tmp_path / "hf"), TrainerCallback(), 1, {})
    models = [trainer.model] + ([trainer.ref_model] if getattr(trainer, "ref_model", None) is not None else [])
    assert method == "grpo" or len(models) == 2  # RLOO (beta > 0, no LoRA) has its own reference
    keep = list(prompts.answer_token_ids(tok, cfg["prompt"]))
    ids = torch.tensor([prompts.encode(tok, prompts.relevance_prompt(tok, "ocean heat", "argo floats",
                                                                     cfg["prompt"]))["input_ids"]])
    for model in models:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        others = torch.ones_like(logits, dtype=torch.bool)
        others[keep] = False
        assert logits[others].max() < logits[keep].min() - 1e3

