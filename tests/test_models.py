"""Model registry: presets build offline, and artifact keys follow a model's weights."""
from __future__ import annotations

import shutil

import torch

from bench.models import model_fingerprint, resolve_model


def test_tiny_families_are_distinct_networks():
    llama, mistral = resolve_model("tiny-llama"), resolve_model("tiny-mistral")
    assert model_fingerprint(llama) != model_fingerprint(mistral)


def test_a_model_dir_with_new_weights_gets_a_new_fingerprint(tmp_path):
    from transformers import AutoModelForCausalLM

    src = tmp_path / "m"
    shutil.copytree(resolve_model("tiny-qwen2"), src)
    before = model_fingerprint.__wrapped__(str(src))
    assert model_fingerprint.__wrapped__(str(src)) == before  # stable
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(src)
    assert model_fingerprint.__wrapped__(str(src)) != before  # so cached training/re-ranking is redone
