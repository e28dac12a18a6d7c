"""Tokenizer families of the paper's models, built offline, each with a tiny random-init causal LM.

The hub is unreachable here, so each family's tokenizer is rebuilt from its defining behaviour, with
the `tokenizers` library and the family's own chat template:
- `llama3`: byte-level BPE whose post-processor puts `<|begin_of_text|>` in front of every text (as
  Llama-3's does), a chat template that writes `{{ bos_token }}` itself, `<|eot_id|>` as EOS and no pad
  token (so a naive pad = EOS occurs inside every chat prompt);
- `mistral`: SentencePiece-style (Metaspace, "▁" word prefix) with a post-processor adding `<s>`, the
  `[INST] ... [/INST]` template (no generation prompt; the answer follows after a space), `<unk>`;
- `smollm2`: SmolLM2-135M-Instruct's own tokenizer (the preset): ChatML, no BOS added, pad `<|im_end|>`;
- `no-template`: the tiny preset's tokenizer without a chat template (`style: chat` falls back to plain).
"""
from __future__ import annotations

import shutil
from pathlib import Path

LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
                   " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + "
                    "' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")
FAMILIES = ("llama3", "mistral", "smollm2", "no-template")


def _corpus() -> list[str]:
    from bench.models import _tokenizer_corpus

    return _tokenizer_corpus()


def _llama3(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|reserved_special_token_0|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=1024, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                           show_progress=False))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   model_max_length=2048)
    fast.chat_template = LLAMA3_TEMPLATE
    return fast


def _mistral(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=1024, special_tokens=["<unk>", "<s>", "</s>"],
                                                           show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=2048)
    fast.chat_template = MISTRAL_TEMPLATE
    return fast


def _preset_tokenizer(name: str, keep_template: bool):
    from transformers import AutoTokenizer

    from bench.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    if not keep_template:
        tok.chat_template = None
    return tok


def build_family(family: str, out: Path) -> str:
    """A model directory: the family's tokenizer and a tiny random-init Llama over its vocabulary."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    out = Path(out)
    if (out / "config.json").is_file():
        return str(out)
    tok = {"llama3": lambda: _llama3(out), "mistral": lambda: _mistral(out),
           "smollm2": lambda: _preset_tokenizer("smollm2-135m-instruct", True),
           "no-template": lambda: _preset_tokenizer("tiny-llama", False)}[family]()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(tmp)
    if family == "no-template":  # save_pretrained keeps a template file of the original dir: none at all
        for f in ("chat_template.jinja", "chat_template.json"):
            (tmp / f).unlink(missing_ok=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp)
    tmp.rename(out)
    return str(out)
