"""Inside a Ray Train worker: one grid cell trained with trl's own trainer for its method.

`train_loop(config)` is the TorchTrainer's per-worker function. It builds the method's dataset
in the prompt format the cell's scorer reads (`bench.rerank.prompts`), trains with trl + peft
LoRA (or all weights), reports metrics and checkpoints to Ray Train from a TrainerCallback,
resumes from the last checkpoint after a worker failure, and finally scores the held-out
preference pairs with the cell's own single-neuron scorer (pairwise accuracy).

Which neuron scores each method is declared in `bench.train.config.METHODS`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path



def _say(cell: str, text: str) -> None:
    # Worker output reaches the driver's terminal through Ray's log forwarding.
    print(f"[train {cell}] {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- datasets
def item_budget(max_length: int) -> int:
    """Tokens left for the item once the prompt is around it: the same rule the scorer uses."""
    return max(8, max_length - 96)


def _tokenizer(model_dir: str, max_length: int, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.model_max_length = max_length
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def sft_dataset(tok, items: list[dict], style: str, max_length: int):
    """Prompt-completion pairs: the relevance prompt, then the answer token ('yes'/'no')."""
    from datasets import Dataset

    from bench.rerank import prompts

    budget = item_budget(max_length)
    return Dataset.from_list([
        {"prompt": prompts.relevance_prompt(tok, it["query"], prompts.truncate_item(tok, it["text"], budget), style),
         "completion": prompts.answer_text(it["relevant"], style)} for it in items])


def dpo_dataset(tok, pairs: list[dict], style: str, max_length: int):
    """Each preference pair -> 'yes' over 'no' for its chosen item, 'no' over 'yes' for its rejected one."""
    from datasets import Dataset

    from bench.rerank import prompts

    budget = item_budget(max_length)
    yes, no = prompts.answer_text(True, style), prompts.answer_text(False, style)
    rows, seen = [], set()
    for p in pairs:
        for text, good in ((p["chosen"], True), (p["rejected"], False)):
            key = (p["query"], text)
            if key in seen:  # an item appears in up to 5 pairs: one example per item and label
                continue
            seen.add(key)
            prompt = prompts.relevance_prompt(tok, p["query"], prompts.truncate_item(tok, text, budget), style)
            rows.append({"prompt": prompt, "chosen": yes if good else no, "rejected": no if good else yes})
    return Dataset.from_list(rows)


def rm_dataset(tok, pairs: list[dict], max_length: int):
    """Pre-tokenised exactly as `RewardHeadScorer` reads a pair: the user message, no special tokens."""
    from datasets import Dataset

    from bench.rerank import prompts

    budget = item_budget(max_length)

    def ids(q, text):
        return tok(prompts.user_message(q, prompts.truncate_item(tok, text, budget)), add_special_tokens=False,
                   truncation=True, max_length=max_length)["input_ids"]

    return Dataset.from_list([{"chosen_ids": ids(p["query"], p["chosen"]), "rejected_ids": ids(p["query"], p["rejected"])}
                              for p in pairs])


def rl_prompts(tok, items: list[dict], style: str, max_length: int) -> list[dict]:
    from bench.rerank import prompts

    budget = item_budget(max_length)
    return [{"prompt": prompts.relevance_prompt(tok, it["query"], prompts.truncate_item(tok, it["text"], budget), style),
             "query": it["query"], "text": it["text"], "target": 1.0 if it["relevant"] else -1.0} for it in items]


def answer_reward(completion: str, target: float) -> float:
    """+target for 'yes', -target for 'no' (target > 0 for relevant items), -1 for anything else."""
    word = completion.strip().lower()
    if word.startswith("yes"):
        return target
    if word.startswith("no"):
        return -target
    return -1.0


# ----------------------------------------------------------------------------- PPO reward
class AnswerRewardModel:
    """The RM cell as PPO's reward model: the RM's score of (query, item), signed by the answer.

    trl's PPO calls `get_reward(model, query_responses)`, which runs `model.<base_model_prefix>`
    and `model.score` on the prompt + generated tokens. The RM scores (query, item) pairs in its
    own format, so its standardised scores are computed once per training prompt (one batched
    pass) and looked up here by the prompt's tokens; the generated answer decides the sign.
    """

    @staticmethod
    def build(prompt_ids: list[list[int]], rm_scores, yes_id: int, no_id: int, pad_id: int):
        import numpy as np
        import torch

        z = (np.asarray(rm_scores, dtype=np.float64) - np.median(rm_scores)) / (np.std(rm_scores) + 1e-6)
        # Pad-equal tokens are invisible to PPO (it masks them), so keys leave them out too.
        table = {tuple(t for t in ids if t != pad_id): float(s) for ids, s in zip(prompt_ids, z)}
        lengths = sorted({len(k) for k in table})

        class Backbone(torch.nn.Module):
            def forward(self, input_ids, attention_mask, **_):
                out = torch.full((input_ids.shape[0], input_ids.shape[1], 1), -1.0)
                for row in range(input_ids.shape[0]):
                    tokens = input_ids[row][attention_mask[row].bool()].tolist()
                    for n in lengths:
                        score = table.get(tuple(tokens[:n]))
                        if score is not None:
                            answer = tokens[n] if len(tokens) > n else None
                            out[row, :, 0] = score if answer == yes_id else -score if answer == no_id else -1.0
                            break
                return type("Out", (), {"hidden_states": (out.to(input_ids.device),)})()

        class RewardModel(torch.nn.Module):
            base_model_prefix = "backbone"

            def __init__(self):
                super().__init__()
                self.backbone = Backbone()
                self.score = torch.nn.Identity()

        return RewardModel()


# ----------------------------------------------------------------------------- reporting
def make_report_callback(cell: str, loss_keys: tuple[str, ...], rank: int):
    import ray.train
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class RayReport(TrainerCallback):
        """Loss points and progress lines on log; a Ray Train checkpoint on every save."""

        def __init__(self):
            self.curve: list[tuple[int, float]] = []
            self.started = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = next((logs[k] for k in loss_keys if logs and k in logs), None)
            if loss is None or not math.isfinite(float(loss)):
                return
            self.curve.append((int(state.global_step), float(loss)))
            if rank == 0:
                done = max(state.global_step, 1)
                eta = (time.time() - self.started) / done * max(state.max_steps - state.global_step, 0)
                _say(cell, f"state=training step={state.global_step}/{state.max_steps} loss={float(loss):.4f} "
                           f"eta={eta:.0f}s")

        def on_save(self, args, state, control, **kwargs):
            metrics = {"step": int(state.global_step), "loss": self.curve[-1][1] if self.curve else float("nan")}
            source = get_last_checkpoint(args.output_dir) if rank == 0 else None
            if source is None:
                ray.train.report(metrics, checkpoint=None)
                return
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copytree(source, Path(tmp) / "checkpoint")
                (Path(tmp) / "curve.json").write_text(json.dumps(self.curve))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    return RayReport()


# ----------------------------------------------------------------------------- trainers
def _common_args(cfg: dict, out_dir: str, world: int) -> dict:
    h = cfg["hyper"]
    args = dict(output_dir=out_dir, learning_rate=h["lr"], per_device_train_batch_size=h["batch_size"],
                gradient_accumulation_steps=h["grad_accum"], num_train_epochs=h["epochs"],
                max_steps=h["max_steps"] or -1, logging_steps=h["logging_steps"], save_strategy="steps",
                save_steps=h["save_steps"], save_total_limit=1, report_to="none", seed=cfg["seed"],
                data_seed=cfg["seed"], disable_tqdm=True, use_cpu=not cfg["use_gpu"], warmup_steps=h["warmup_steps"],
                dataloader_num_workers=0, bf16=False, fp16=False)
    if cfg.get("deepspeed"):
        args["deepspeed"] = cfg["deepspeed"]
    return args


def _lora(cfg: dict, task_type: str):
    if cfg["hyper"]["full_finetune"]:
        return None
    from peft import LoraConfig

    h = cfg["hyper"]
    return LoraConfig(r=h["lora_r"], lora_alpha=h["lora_alpha"], lora_dropout=h["lora_dropout"], task_type=task_type,
                      target_modules="all-linear")


def _causal_lm(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def build_trainer(cfg: dict, out_dir: str, callback, world: int):
    """The method's trl trainer; returns (trainer, tokenizer, loss log keys)."""
    method, h, style = cfg["method"], cfg["hyper"], cfg["prompt"]
    model_dir = cfg["model_dir"]
    common = _common_args(cfg, out_dir, world)
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        tok = _tokenizer(model_dir, h["max_length"])
        data = sft_dataset(tok, cfg["data"]["train_items"], style, h["max_length"])
        args = SFTConfig(**common, max_length=h["max_length"], completion_only_loss=True, packing=False)
        return SFTTrainer(model=_causal_lm(model_dir), args=args, train_dataset=data, processing_class=tok,
                          peft_config=_lora(cfg, "CAUSAL_LM"), callbacks=[callback]), tok
    if method == "rm":
        import torch
        from transformers import AutoModelForSequenceClassification
        from trl import RewardConfig, RewardTrainer

        tok = _tokenizer(model_dir, h["max_length"])
        data = rm_dataset(tok, cfg["data"]["train_pairs"], h["max_length"])
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        args = RewardConfig(**common, max_length=h["max_length"])
        return RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                             peft_config=_lora(cfg, "SEQ_CLS"), callbacks=[callback]), tok
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        tok = _tokenizer(model_dir, h["max_length"])
        data = dpo_dataset(tok, cfg["data"]["train_pairs"], style, h["max_length"])
        args = DPOConfig(**common, max_length=h["max_length"], beta=h["dpo_beta"])
        return DPOTrainer(model=_causal_lm(model_dir), args=args, train_dataset=data, processing_class=tok,
                          peft_config=_lora(cfg, "CAUSAL_LM"), callbacks=[callback]), tok
    if method in ("grpo", "rloo"):
        from datasets import Dataset

        tok = _tokenizer(model_dir, h["max_length"], padding_side="left")
        data = Dataset.from_list(rl_prompts(tok, cfg["data"]["train_items"], style, h["max_length"]))

        def relevance_reward(prompts, completions, target, **_):
            return [answer_reward(c, t) for c, t in zip(completions, target)]

        n = h["rl_generations"]
        batch = max(n, (h["batch_size"] // n) * n)  # whole groups of completions per step
        rl_common = {**common, "per_device_train_batch_size": batch}
        if method == "grpo":
            from trl import GRPOConfig as Config, GRPOTrainer as Trainer
        else:
            from trl import RLOOConfig as Config, RLOOTrainer as Trainer
        args = Config(**rl_common, num_generations=n, max_completion_length=h["rl_response_length"],
                      beta=0.0 if method == "grpo" else 0.05)
        return Trainer(model=_causal_lm(model_dir), reward_funcs=relevance_reward, args=args, train_dataset=data,
                       processing_class=tok, peft_config=_lora(cfg, "CAUSAL_LM"), callbacks=[callback]), tok
    if method == "ppo":
        return _ppo_trainer(cfg, common, callback)
    raise ValueError(f"unknown method {method!r}")


def _ppo_trainer(cfg: dict, common: dict, callback):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from bench.config import ScorerSpec
    from bench.rerank import prompts
    from bench.rerank.scorers import build_scorer

    h, style, model_dir = cfg["hyper"], cfg["prompt"], cfg["model_dir"]
    tok = _tokenizer(model_dir, h["max_length"], padding_side="left")
    items = cfg["data"]["train_items"]
    rows = rl_prompts(tok, items, style, h["max_length"])
    prompt_ids = [tok(r["prompt"], add_special_tokens=False)["input_ids"] for r in rows]
    rm = build_scorer(ScorerSpec(name="rm", kind="reward-head", model=cfg["rm"]["model"], adapter=cfg["rm"]["adapter"],
                                 max_length=h["max_length"], batch_size=cfg["score_batch_size"]))
    rm_scores = rm.score([r["query"] for r in rows], [r["text"] for r in rows])
    del rm
    yes_id, no_id = prompts.answer_token_ids(tok, style)
    reward_model = AnswerRewardModel.build(prompt_ids, rm_scores, yes_id, no_id, tok.pad_token_id)
    data = Dataset.from_list([{"input_ids": ids} for ids in prompt_ids])
    value_model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
    value_model.config.pad_token_id = tok.pad_token_id
    steps = h["max_steps"] or max(1, int(h["epochs"] * len(rows) / (h["batch_size"] * h["grad_accum"])))
    ppo_args = {k: v for k, v in common.items() if k not in ("max_steps", "num_train_epochs", "save_strategy",
                                                            "save_steps", "save_total_limit", "data_seed")}
    # PPO restarts from scratch after a failure (trl's PPO loop has no resume), so it saves no checkpoints.
    args = PPOConfig(**ppo_args, save_strategy="no", total_episodes=steps * h["batch_size"] * h["grad_accum"],
                     response_length=h["rl_response_length"], num_sample_generations=0, num_ppo_epochs=1,
                     num_mini_batches=1, local_rollout_forward_batch_size=h["batch_size"], stop_token="eos",
                     missing_eos_penalty=None, kl_coef=0.05)
    # An explicit frozen reference model: trl's adapter-disabling path (ref_model=None with LoRA) reads
    # `model.policy` through the DDP wrapper that every Ray Train worker gets, and fails.
    trainer = PPOTrainer(args=args, processing_class=tok, model=_causal_lm(model_dir), ref_model=_causal_lm(model_dir),
                         reward_model=reward_model, train_dataset=data, value_model=value_model,
                         eval_dataset=data.select(range(min(len(data), h["batch_size"]))),
                         peft_config=_lora(cfg, "CAUSAL_LM"), callbacks=[callback])
    return trainer, tok


LOSS_KEYS = {"ppo": ("loss/policy_avg",), "grpo": ("loss",), "rloo": ("loss",)}


# ----------------------------------------------------------------------------- evaluation
def pairwise_accuracy(spec_kwargs: dict, pairs: list[dict]) -> float | None:
    """Share of held-out pairs whose chosen item the cell's scorer scores above the rejected one."""
    if not pairs:
        return None
    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(ScorerSpec(**spec_kwargs))
    unique = sorted({(p["query"], t) for p in pairs for t in (p["chosen"], p["rejected"])})
    scores = dict(zip(unique, scorer.score([q for q, _ in unique], [t for _, t in unique])))
    wins = sum(bool(scores[(p["query"], p["chosen"])] > scores[(p["query"], p["rejected"])]) for p in pairs)
    return float(wins / len(pairs))


def _zero_stage(trainer) -> int | None:
    """The ZeRO stage DeepSpeed actually ran with (None: no DeepSpeed engine)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    plugin = trainer.accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else None


# ----------------------------------------------------------------------------- the loop
def _report_finished(checkpoint, rank: int) -> bool:
    import ray.train

    with checkpoint.as_directory() as d:
        metrics_file = Path(d) / "metrics.json"
        if not metrics_file.is_file():
            return False
        metrics = {k: v for k, v in json.loads(metrics_file.read_text()).items() if k != "loss_curve"}
    ray.train.report(metrics, checkpoint=checkpoint if rank == 0 else None)
    return True


def train_loop(cfg: dict) -> None:
    import ray.train
    import torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cell = cfg["cell"]
    torch.set_num_threads(max(1, int(cfg.get("cpus_per_worker", 1))))
    if cfg.get("pid_dir"):  # lets operators (and the fault-tolerance test) find this worker
        Path(cfg["pid_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(cfg["pid_dir"]) / f"rank{rank}.pid").write_text(str(os.getpid()))
    torch.manual_seed(cfg["seed"])
    resume = ray.train.get_checkpoint()
    _say(cell, f"state={'resuming' if resume else 'starting'} rank={rank}/{world} pid={os.getpid()}")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cell-") as work:
        callback = make_report_callback(cell, LOSS_KEYS.get(cfg["method"], ("loss",)), rank)
        trainer, tok = build_trainer(cfg, str(Path(work) / "hf"), callback, world)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # our callback prints one progress line per logging step
        if resume is not None and _report_finished(resume, rank):
            return  # finished before the driver could collect it: hand over the final checkpoint again
        train_started = time.time()
        if resume is not None and cfg["method"] != "ppo":
            with resume.as_directory() as d:
                curve = Path(d) / "curve.json"
                if curve.is_file():
                    callback.curve = [tuple(x) for x in json.loads(curve.read_text())]
                output = trainer.train(resume_from_checkpoint=str(Path(d) / "checkpoint"))
        else:
            output = trainer.train()
        seconds, train_seconds = time.time() - started, time.time() - train_started
        steps = int(trainer.state.global_step)
        samples = steps * cfg["hyper"]["batch_size"] * cfg["hyper"]["grad_accum"] * world
        curve = callback.curve
        metrics = {"final_loss": curve[-1][1] if curve else float(output.training_loss or float("nan")),
                   "train_loss": float(getattr(output, "training_loss", None) or float("nan")) if output else None,
                   "steps": steps, "samples": samples, "seconds": round(seconds, 2),
                   "train_seconds": round(train_seconds, 2),  # trainer.train() alone (samples/s is over this)
                   "samples_per_s": round(samples / train_seconds, 3) if train_seconds > 0 else None,
                   "world_size": world, "deepspeed_zero_stage": _zero_stage(trainer)}
        final = Path(work) / "final"
        if rank == 0:
            target = final / ("model" if cfg["hyper"]["full_finetune"] else "adapter")
            if cfg["method"] == "ppo":  # trl's PPO save_model misses the policy inside the DDP wrapper
                trainer.accelerator.unwrap_model(trainer.model).policy.save_pretrained(str(target))
            else:
                trainer.save_model(str(target))
            if cfg["hyper"]["full_finetune"]:
                tok.save_pretrained(str(target))
        if world > 1:
            torch.distributed.barrier()
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        del trainer
        spec = {"name": cell, "kind": cfg["scorer_kind"], "prompt": cfg["prompt"], "max_length": cfg["hyper"]["max_length"],
                "batch_size": cfg["score_batch_size"]}
        if cfg["hyper"]["full_finetune"]:
            spec["model"] = str(final / "model")
        else:
            spec.update(model=cfg["model_dir"], adapter=str(final / "adapter"))
        metrics["pairwise_accuracy"] = pairwise_accuracy(spec, cfg["data"]["valid_pairs"])
        metrics["n_valid_pairs"] = len(cfg["data"]["valid_pairs"])
        metrics["loss_curve"] = curve
        (final / "metrics.json").write_text(json.dumps(metrics, indent=1))
        acc = metrics["pairwise_accuracy"]
        _say(cell, f"state=trained steps={steps} loss={metrics['final_loss']:.4f} "
                   f"pairwise_acc={'n/a' if acc is None else f'{acc:.3f}'} in {seconds:.0f}s")
        ray.train.report({k: v for k, v in metrics.items() if k != "loss_curve"},
                         checkpoint=ray.train.Checkpoint.from_directory(str(final)))
