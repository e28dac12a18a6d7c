"""Model loading, one public place: the tokenizer, dtype and device rules, adapters, the causal LM and LoRA
settings that training (`bench.train.methods`), R2R students (`bench.r2r.student`), scoring
(`bench.rerank.scorers`) and serving (through the scorers) all use. Heavy libraries load inside the functions.
"""
from __future__ import annotations

from bench.rerank import prompts


def torch_dtype(name: str, device: str):
    """The compute dtype: `auto` is bf16 on CUDA (fp16 where bf16 is missing), float32 elsewhere."""
    import torch

    if name == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def device() -> str:
    """`cuda` where a GPU is visible, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model_dir: str, max_length: int, padding_side: str = "left"):
    """The tokenizer every path uses (training, scoring, SHAP, serving), with a pad token that never occurs in
    a prompt (`pad_token_for`)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.model_max_length = max_length
    pad = pad_token_for(tok)
    if pad != tok.pad_token:
        tok.pad_token = pad
    tok.padding_side = padding_side  # left: the answer position is the last one for every row
    return tok


def pad_token_for(tok) -> str | None:
    """A pad token whose id occurs in no prompt. Code that masks by `ids != pad_id` (trl's PPO, sequence
    classification heads locating the last token) would otherwise hide real prompt tokens: SmolLM2 pads with
    `<|im_end|>`, which its chat template writes into every prompt. Tried in order: the tokenizer's own pad,
    its unknown token, its other special tokens (never BOS), EOS; the first whose id neither relevance
    prompt (chat, plain) nor the reward head's message contains."""
    used: set[int] = set()
    for style in ("chat", "plain"):
        used |= set(prompts.encode(tok, prompts.relevance_prompt(tok, "q", "d", style))["input_ids"])
    used |= set(prompts.encode(tok, prompts.user_message("q", "d"))["input_ids"])
    specials = [t.content for _, t in sorted(getattr(tok, "added_tokens_decoder", {}).items()) if t.special]
    candidates = [tok.pad_token, tok.unk_token, *specials, tok.eos_token]
    for token in candidates:
        if token is None or token == tok.bos_token:
            continue
        token_id = tok.convert_tokens_to_ids(token)
        if token_id is not None and token_id not in used:
            return token
    return tok.pad_token or tok.eos_token  # every special token occurs in prompts: masks by length only


def apply_adapter(model, adapter: str | None):
    if not adapter:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def causal_lm(model_dir: str, dtype: str = "float32"):
    """A causal LM in float32 (training keeps full precision; mixed precision is the trainer's choice)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))


def lora_config(cfg: dict, task_type: str):
    """LoRA over every linear layer from a cell's `hyper` (lora_r / lora_alpha / lora_dropout); None when the cell
    fine-tunes all weights (`full_finetune`)."""
    if cfg["hyper"]["full_finetune"]:
        return None
    from peft import LoraConfig

    h = cfg["hyper"]
    return LoraConfig(r=h["lora_r"], lora_alpha=h["lora_alpha"], lora_dropout=h["lora_dropout"], task_type=task_type,
                      target_modules="all-linear")
