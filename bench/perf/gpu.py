"""The device check: what one GPU does with the harness's own code (`scripts/gpu_check.sh`, ~8 minutes).

Needs torch, transformers, peft, trl, shap and pydantic only (no Ray: the check runs the scorer,
the trainers and KernelSHAP in one process). Measures, on a random-init model of a paper size
(Qwen2.5-1.5B's configuration; the tokenizer is the project's offline BPE one, so the vocabulary
is small - the LM head is read at one position only):

- scorer pairs/s in bf16 (fp16 where bf16 is missing) vs float32, same pairs and batches;
- one LoRA training step per method (SFT, RM, DPO, GRPO, RLOO; PPO with the RM just trained),
  bf16 mixed precision: samples/s and model FLOPs utilisation (6 N tokens per sample over the
  GPU's dense bf16 peak);
- KernelSHAP items/s through the relevance-token scorer (bf16).

Writes results/perf/gpu.json. `--smoke` runs every path on the CPU with a tiny configuration
(what the test suite does), so the script is known to work before device time is spent on it.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

# dense bf16 peak (FLOP/s) of known accelerators, for MFU; others report MFU as null
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}
QWEN_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048, tie_word_embeddings=True)


def _texts() -> list[tuple[str, str, bool]]:
    """(query, item, relevant) from the shipped demo set."""
    from bench.data.io import read_jsonl
    from bench.data.loaders import demo_path

    out = []
    for _, row in read_jsonl(demo_path()):
        for it in row["items"]:
            out.append((row["query"], f"{it.get('title', '')}\n{it['summary']}", it["grade"] >= 5))
    return out


def build_model(out: Path, smoke: bool):
    """A random-init Qwen2 model of the chosen size with the offline tokenizer, saved to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from bench.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer(out)
    cfg = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **(TINY if smoke else QWEN_1_5B))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    del model
    return tok, n


def scorer_throughput(model_dir: Path, pairs, batch: int) -> dict:
    import torch

    from bench.rerank.scorers import RelevanceTokenScorer

    out = {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for dtype in ("float32", "auto"):
        spec = SimpleNamespace(name="gpu", kind="relevance-token", model=str(model_dir), adapter=None, prompt="chat",
                               batch_size=batch, max_length=512, dtype=dtype)
        scorer = RelevanceTokenScorer(spec, str(model_dir))
        scorer.score([q for q, _, _ in pairs[:batch]], [d for _, d, _ in pairs[:batch]])  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        scores = scorer.score([q for q, _, _ in pairs], [d for _, d, _ in pairs])
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        out[str(scorer.dtype).replace("torch.", "")] = {"pairs": len(pairs), "seconds": round(dt, 3),
                                                       "pairs_per_s": round(len(pairs) / dt, 1),
                                                       "mean_score": float(scores.mean())}
        del scorer
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def training_steps(model_dir: Path, texts, n_params: int, steps: int, batch: int) -> dict:
    """One measured LoRA step per method (after one warm-up step), through the train stage's own builders."""
    import torch
    from transformers import TrainerCallback

    from bench.train.methods import build_trainer

    gpu = torch.cuda.is_available()
    items = [{"query": q, "text": d, "relevant": r, "grade": 9 if r else 0} for q, d, r in texts[:64]]
    rel = [it for it in items if it["relevant"]] or items[:1]
    irr = [it for it in items if not it["relevant"]] or items[1:2]
    pairs = [{"query": a["query"], "chosen": a["text"], "rejected": b["text"], "chosen_grade": 9, "rejected_grade": 0}
             for a, b in zip(rel * 4, irr * 4)][:64]
    hyper = {"epochs": 1, "max_steps": steps + 1, "lr": 1e-4, "batch_size": batch, "grad_accum": 1, "max_length": 512,
             "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "full_finetune": False, "dpo_beta": 0.1,
             "rl_generations": 4, "rl_response_length": 1, "logging_steps": 1, "save_steps": 10 ** 6,
             "warmup_steps": 0, "seed": 0}
    peak = next((v for k, v in PEAK_BF16.items() if gpu and k in torch.cuda.get_device_name()), None)
    out, rm_adapter = {}, None
    for method in ("sft", "rm", "dpo", "grpo", "rloo", "ppo"):
        work = Path(tempfile.mkdtemp(prefix=f"gpu-{method}-"))
        cfg = {"cell": method, "key": method, "method": method, "model_dir": str(model_dir), "prompt": "chat",
               "hyper": hyper, "seed": 0, "scorer_kind": "reward-head" if method == "rm" else "relevance-token",
               "score_batch_size": batch, "use_gpu": gpu, "data": {"train_items": items, "train_pairs": pairs,
                                                                    "valid_pairs": []}, "deepspeed": None,
               "rm": {"model": str(model_dir), "adapter": rm_adapter}}

        class Timer(TrainerCallback):
            def __init__(self):
                self.marks = []

            def on_step_end(self, args, state, control, **kwargs):
                if gpu:
                    torch.cuda.synchronize()
                self.marks.append(time.perf_counter())

        timer = Timer()
        try:
            if method == "ppo" and rm_adapter is None:
                raise RuntimeError("no RM adapter")
            stats: dict = {}
            trainer, tok = build_trainer(cfg, str(work / "hf"), timer, 1, stats)
            t0 = time.perf_counter()
            trainer.train()
            marks = [t0, *timer.marks]
            step_s = (marks[-1] - marks[1]) / max(len(marks) - 2, 1) if len(marks) > 2 else marks[-1] - marks[0]
            samples = batch * (hyper["rl_generations"] if method in ("grpo", "rloo") else 1)
            tokens = 256 * samples  # prompts are fitted to <= 512 tokens; demo items are ~200-260
            flops = 6 * n_params * tokens
            out[method] = {"step_seconds": round(step_s, 4), "samples_per_s": round(samples / step_s, 2),
                           "mfu": round(flops / step_s / peak, 4) if peak else None}
            if method == "rm":
                trainer.save_model(str(work / "adapter"))
                rm_adapter = str(work / "adapter")
        except Exception as e:  # noqa: BLE001 - one method's failure is a result, not the end of the check
            out[method] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        finally:
            trainer = None
            if gpu:
                torch.cuda.empty_cache()
    return {"methods": out, "batch_size": batch, "measured_steps": steps, "peak_bf16_flops": peak,
            "flops_per_sample": "6 x parameters x 256 tokens (LoRA still back-propagates through the frozen weights)"}


def shap_throughput(model_dir: Path, texts, items: int, nsamples: int) -> dict:
    from bench.explain.config import ExplainConfig
    from bench.explain.kernel_shap import explain_item
    from bench.rerank.scorers import RelevanceTokenScorer

    spec = SimpleNamespace(name="gpu", kind="relevance-token", model=str(model_dir), adapter=None, prompt="chat",
                           batch_size=128, max_length=512, dtype="auto")
    scorer = RelevanceTokenScorer(spec, str(model_dir))
    cfg = ExplainConfig(nsamples=nsamples, ks=[1, 5, 10], batch_size=128)
    explain_item(scorer, texts[0][0], texts[0][1], cfg, seed=0)  # warm-up
    t0 = time.perf_counter()
    for q, d, _ in texts[1:items + 1]:
        explain_item(scorer, q, d, cfg, seed=0)
    dt = time.perf_counter() - t0
    return {"items": items, "nsamples": nsamples, "seconds": round(dt, 2), "items_per_s": round(items / dt, 3),
            "dtype": str(scorer.dtype).replace("torch.", "")}


def run(out_dir: Path, smoke: bool = False) -> dict:
    import torch

    if not smoke and not torch.cuda.is_available():
        return {"skipped": "no CUDA device here; run scripts/gpu_check.sh on a GPU machine (`--smoke` tries it on CPU)"}
    started = time.time()
    texts = _texts()
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        tok, n_params = build_model(tmp / "model", smoke)
        result = {"model": "random-init Qwen2 " + ("tiny (smoke)" if smoke else "1.5B configuration (Qwen2.5-1.5B)"),
                  "parameters": n_params, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                  "torch": torch.__version__, "python": platform.python_version()}
        pairs = texts[:32 if smoke else 512]
        result["scorer"] = scorer_throughput(tmp / "model", pairs, 16 if smoke else 64)
        fp32 = result["scorer"].get("float32", {}).get("pairs_per_s")
        low = next((v["pairs_per_s"] for k, v in result["scorer"].items() if k != "float32"), None)
        result["scorer"]["speedup_low_precision_vs_fp32"] = round(low / fp32, 2) if low and fp32 else None
        result["training"] = training_steps(tmp / "model", texts, n_params, steps=1 if smoke else 2,
                                            batch=2 if smoke else 8)
        result["kernel_shap"] = shap_throughput(tmp / "model", texts, items=2 if smoke else 8,
                                                nsamples=16 if smoke else 256)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.time() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument("--smoke", action="store_true", help="tiny configuration on any device (CPU included)")
    args = parser.parse_args(argv)
    result = run(args.out, smoke=args.smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("gpu-smoke.json" if args.smoke else "gpu.json")
    path.write_text(json.dumps({"benchmark": "gpu", **result}, indent=1))
    print(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
