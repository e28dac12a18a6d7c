"""Inside a Ray Train worker: grid cells trained with trl's own trainer for their method.

`train_lane(config)` is the TorchTrainer's per-worker function. One worker group (a *lane*)
trains a list of cells one after the other, so process start-up, imports and Ray Train's worker
group are paid once per lane instead of once per cell. Per cell it builds the method's dataset
in the exact input format the cell's scorer reads (`bench.rerank.prompts`: one fitting rule for
training, scoring, SHAP and serving), scores the held-out pairs with the untrained model, trains
with trl + peft LoRA (or all weights), scores them again with the trained model while it is still
in memory, and reports the cell as a Ray Train checkpoint named `cell-<key>`.

Fault tolerance stays per cell: every trainer save is also a Ray Train checkpoint carrying
`progress.json` (cells done, failed, the cell in progress). A worker that dies is restarted by
Ray Train (`FailureConfig`), reads that progress, skips finished cells and resumes the cell it
was in from its last checkpoint. A cell that raises is recorded as failed and the lane goes on.

Online RL (PPO, GRPO, RLOO) acts in the space of the two relevance tokens (`restrict_to_answers`):
a model that has never said "yes" or "no" would otherwise earn the same reward for every sample,
leaving zero advantage and no gradient.

Which neuron scores each method is declared in `bench.train.config.METHODS`.
"""
from __future__ import annotations

import gc
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.console import emit_event
from bench.errors import one_line
from bench.model_loading import causal_lm, load_tokenizer, lora_config


# ----------------------------------------------------------------------------- datasets
def _tokenizer(model_dir: str, max_length: int, padding_side: str = "right"):
    return load_tokenizer(model_dir, max_length, padding_side)


def _fitted(fitter, query: str, text: str, stats: dict):
    pair = fitter.fit(query, text)
    stats["pairs"] = stats.get("pairs", 0) + 1
    stats["query_cut"] = stats.get("query_cut", 0) + int(pair.query_cut)
    stats["item_cut"] = stats.get("item_cut", 0) + int(pair.item_cut)
    return pair


def sft_dataset(tok, items: list[dict], style: str, max_length: int, stats: dict | None = None):
    """Pre-tokenised prompt + completion: the relevance prompt's ids exactly as the scorer reads them (fitted
    by the one rule, encoded by `prompts.encode`), then the answer token and EOS; the loss is on those two
    (`completion_mask`). Handing trl ids, not strings, keeps its own special-token rule out of training."""
    from datasets import Dataset

    from bench.rerank import prompts

    fitter, stats = prompts.relevance_fitter(tok, max_length, style), stats if stats is not None else {}
    rows = []
    for it in items:
        prompt = _fitted(fitter, it["query"], it["text"], stats).encoding["input_ids"]
        answer = prompts.answer_ids(tok, it["relevant"], style)
        rows.append({"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)})
    return Dataset.from_list(rows)


def dpo_dataset(tok, pairs: list[dict], style: str, max_length: int, stats: dict | None = None):
    """Each preference pair -> 'yes' over 'no' for its chosen item, 'no' over 'yes' for its rejected one,
    pre-tokenised (prompt ids as the scorer reads them; `PretokenizedDPOTrainer` keeps them as they are)."""
    from datasets import Dataset

    from bench.rerank import prompts

    fitter, stats = prompts.relevance_fitter(tok, max_length, style), stats if stats is not None else {}
    yes, no = prompts.answer_ids(tok, True, style), prompts.answer_ids(tok, False, style)
    rows, seen = [], set()
    for p in pairs:
        for text, good in ((p["chosen"], True), (p["rejected"], False)):
            key = (p["query"], text)
            if key in seen:  # an item appears in up to 5 pairs: one example per item and label
                continue
            seen.add(key)
            prompt = _fitted(fitter, p["query"], text, stats).encoding["input_ids"]
            rows.append({"prompt_ids": prompt, "chosen_ids": yes if good else no, "rejected_ids": no if good else yes})
    return Dataset.from_list(rows)


def rm_dataset(tok, pairs: list[dict], max_length: int, stats: dict | None = None, kind: str = "reward-head"):
    """Pre-tokenised exactly as the cell's scorer reads a pair (`RewardHeadScorer` / `CrossEncoderScorer`)."""
    from datasets import Dataset

    from bench.rerank import prompts

    stats = stats if stats is not None else {}
    if kind == "cross-encoder":  # [CLS] query [SEP] item [SEP], with the segment ids the scorer passes
        fitter = prompts.pair_fitter(tok, max_length)
        rows = []
        for p in pairs:
            row = {}
            for side in ("chosen", "rejected"):
                enc = _fitted(fitter, p["query"], p[side], stats).encoding
                row[f"{side}_ids"], row[f"{side}_type_ids"] = enc["input_ids"], enc["token_type_ids"]
            rows.append(row)
        return Dataset.from_list(rows)
    fitter = prompts.message_fitter(tok, max_length)

    def encode(q, text):
        return _fitted(fitter, q, text, stats).encoding["input_ids"]

    return Dataset.from_list([{"chosen_ids": encode(p["query"], p["chosen"]),
                               "rejected_ids": encode(p["query"], p["rejected"])} for p in pairs])


def pair_preference_collator(pad_token_id: int):
    """trl's preference collator plus padded segment ids (a BERT cross-encoder reads query and item
    as segments 0 and 1, in training as in scoring)."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    base = DataCollatorForPreference(pad_token_id=pad_token_id)

    def collate(examples):
        batch = base([{k: e[k] for k in ("chosen_ids", "rejected_ids")} for e in examples])
        width = batch["input_ids"].shape[1]
        types = [e["chosen_type_ids"] for e in examples] + [e["rejected_type_ids"] for e in examples]
        batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types])
        return batch

    return collate


def rl_prompts(tok, items: list[dict], style: str, max_length: int, stats: dict | None = None) -> list[dict]:
    from bench.rerank import prompts

    fitter, stats = prompts.relevance_fitter(tok, max_length, style), stats if stats is not None else {}
    return [{"prompt": _fitted(fitter, it["query"], it["text"], stats).input, "query": it["query"], "text": it["text"],
             "target": 1.0 if it["relevant"] else -1.0} for it in items]


def answer_reward(first_token: int | None, target: float, yes_id: int, no_id: int) -> float:
    """+target when the answer's first token is the scorer's 'yes' token, -target for its 'no' token
    (target > 0 for relevant items), -1 for anything else. Tokens, not text: a small tokenizer may
    split "yes" into pieces, and the scoring neuron reads exactly these two tokens."""
    if first_token == yes_id:
        return target
    if first_token == no_id:
        return -target
    return -1.0


def restrict_to_answers(model, tok, style: str):
    """Make the policy a distribution over the two relevance tokens only.

    A forward hook on the LM head adds -1e4 to every other token's logit, so sampling, the
    log-probabilities trl's PPO / GRPO / RLOO compute for their ratios and KL terms, and the
    reference model (given the same hook) all live in the same two-token space. The scoring
    neuron, logit("yes") - logit("no"), is untouched by the mask; the hook is not saved with
    the adapter.
    """
    import torch

    from bench.rerank import prompts

    keep = list(prompts.answer_token_ids(tok, style))
    head = model.get_output_embeddings()
    mask = torch.full((head.out_features,), -1e4, dtype=torch.float32)
    mask[keep] = 0.0

    def add_mask(module, inputs, output):
        return output + mask.to(device=output.device, dtype=output.dtype)

    return head.register_forward_hook(add_mask)


# ----------------------------------------------------------------------------- PPO reward
def reward_model_source(cell_dir, base_model: str) -> dict:
    """How PPO loads a finished RM cell: the base model with the cell's LoRA `adapter/`, or the cell's
    whole `model/` when the RM was fully fine-tuned (`hyper.full_finetune`)."""
    cell_dir = Path(cell_dir)
    if (cell_dir / "adapter").is_dir():
        return {"model": base_model, "adapter": str(cell_dir / "adapter")}
    if (cell_dir / "model").is_dir():
        return {"model": str(cell_dir / "model"), "adapter": None}
    raise FileNotFoundError(f"reward model cell {cell_dir} has neither adapter/ nor model/")



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
def _safe(name: str) -> str:
    """A cell name as part of a checkpoint folder name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def progress_checkpoint(progress: dict, extra: dict | None = None):
    """A temporary directory holding progress.json (+ files), for ray.train.report."""
    tmp = tempfile.mkdtemp(prefix="rb-progress-")
    (Path(tmp) / "progress.json").write_text(json.dumps({**progress, **(extra or {})}))
    return tmp


def make_report_callback(cell: dict, loss_keys: tuple[str, ...], rank: int, progress: dict):
    import ray.train
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class RayReport(TrainerCallback):
        """Loss points and progress lines on log; a Ray Train checkpoint (with progress.json) on every save."""

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
                print(f"[train {cell['cell']}] state=training step={state.global_step}/{state.max_steps} "
                      f"loss={float(loss):.4f} eta={eta:.0f}s", flush=True)

        def on_save(self, args, state, control, **kwargs):
            if progress is None:  # trained outside a Ray Train run (tests, tools): no checkpoint to report
                return
            metrics = {"cell": cell["key"], "step": int(state.global_step),
                       "loss": self.curve[-1][1] if self.curve else float("nan")}
            source = get_last_checkpoint(args.output_dir) if rank == 0 else None
            if source is None:
                ray.train.report(metrics, checkpoint=None)
                return
            tmp = progress_checkpoint(progress, {"current": cell["key"]})
            try:
                shutil.copytree(source, Path(tmp) / "checkpoint")
                (Path(tmp) / "curve.json").write_text(json.dumps(self.curve))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"step-{_safe(cell['cell'])}-{cell['key']}-{state.global_step:06d}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    return RayReport()


# ----------------------------------------------------------------------------- trainers
def _common_args(cfg: dict, out_dir: str, world: int) -> dict:
    import torch

    h = cfg["hyper"]
    cuda = cfg["use_gpu"] and torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()  # mixed precision on GPUs; float32 on CPUs
    args = dict(output_dir=out_dir, learning_rate=h["lr"], per_device_train_batch_size=h["batch_size"],
                gradient_accumulation_steps=h["grad_accum"], num_train_epochs=h["epochs"],
                max_steps=h["max_steps"] or -1, logging_steps=h["logging_steps"], save_strategy="steps",
                save_steps=h["save_steps"], save_total_limit=1, report_to="none", seed=cfg["seed"],
                data_seed=cfg["seed"], disable_tqdm=True, use_cpu=not cfg["use_gpu"], warmup_steps=h["warmup_steps"],
                dataloader_num_workers=0, bf16=bf16, fp16=cuda and not bf16)
    if cfg.get("deepspeed"):
        args["deepspeed"] = cfg["deepspeed"]
    return args


def pretokenized_dpo_trainer():
    """trl's DPOTrainer, except that a dataset already tokenised (`prompt_ids`, `chosen_ids`, `rejected_ids`: the
    scorer's ids, `dpo_dataset`) is kept as it is: trl would tokenise prompt strings again with the tokenizer's
    own special tokens (a BOS the scorer never reads, or a second one after a chat template's)."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def encoded_prompts_trainer(trainer_cls, tok):
    """trl's GRPO / RLOO trainer whose prompts are encoded by `prompts.encode` (the ids the scorer reads)
    instead of the tokenizer's default special-token rule."""
    from bench.rerank import prompts

    class EncodedPromptsTrainer(trainer_cls):
        def _tokenize_prompts(self, texts: list):
            return [prompts.encode(tok, t)["input_ids"] for t in texts], None, {}

    EncodedPromptsTrainer.__name__ = trainer_cls.__name__
    return EncodedPromptsTrainer


def build_trainer(cfg: dict, out_dir: str, callback, world: int, stats: dict | None = None):
    """The method's trl trainer; returns (trainer, tokenizer). `stats` receives the fitting counts."""
    method, h, style = cfg["method"], cfg["hyper"], cfg["prompt"]
    model_dir = cfg["model_dir"]
    common = _common_args(cfg, out_dir, world)
    stats = stats if stats is not None else {}
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        tok = _tokenizer(model_dir, h["max_length"])
        data = sft_dataset(tok, cfg["data"]["train_items"], style, h["max_length"], stats)
        args = SFTConfig(**common, max_length=h["max_length"], completion_only_loss=True, packing=False)
        return SFTTrainer(model=causal_lm(model_dir), args=args, train_dataset=data, processing_class=tok,
                          peft_config=lora_config(cfg, "CAUSAL_LM"), callbacks=[callback]), tok
    if method == "rm":
        import torch
        from transformers import AutoModelForSequenceClassification
        from trl import RewardConfig, RewardTrainer

        tok = _tokenizer(model_dir, h["max_length"])
        data = rm_dataset(tok, cfg["data"]["train_pairs"], h["max_length"], stats, cfg["scorer_kind"])
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        encoder = cfg["scorer_kind"] == "cross-encoder"
        args = RewardConfig(**common, max_length=h["max_length"], remove_unused_columns=not encoder)
        return RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                             data_collator=pair_preference_collator(tok.pad_token_id) if encoder else None,
                             peft_config=lora_config(cfg, "SEQ_CLS"), callbacks=[callback]), tok
    if method == "dpo":
        from trl import DPOConfig

        tok = _tokenizer(model_dir, h["max_length"])
        data = dpo_dataset(tok, cfg["data"]["train_pairs"], style, h["max_length"], stats)
        args = DPOConfig(**common, max_length=h["max_length"], beta=h["dpo_beta"])
        return pretokenized_dpo_trainer()(model=causal_lm(model_dir), args=args, train_dataset=data,
                                          processing_class=tok, peft_config=lora_config(cfg, "CAUSAL_LM"),
                                          callbacks=[callback]), tok
    if method in ("grpo", "rloo"):
        from datasets import Dataset

        from bench.rerank import prompts

        tok = _tokenizer(model_dir, h["max_length"], padding_side="left")
        data = Dataset.from_list(rl_prompts(tok, cfg["data"]["train_items"], style, h["max_length"], stats))

        yes_id, no_id = prompts.answer_token_ids(tok, style)

        def relevance_reward(prompts, completions, completion_ids, target, **_):
            return [answer_reward(ids[0] if len(ids) else None, t, yes_id, no_id)
                    for ids, t in zip(completion_ids, target)]

        n = h["rl_generations"]
        batch = max(n, (h["batch_size"] // n) * n)  # whole groups of completions per step
        rl_common = {**common, "per_device_train_batch_size": batch}
        if method == "grpo":
            from trl import GRPOConfig as Config, GRPOTrainer as Trainer
        else:
            from trl import RLOOConfig as Config, RLOOTrainer as Trainer
        model = causal_lm(model_dir)
        restrict_to_answers(model, tok, style)
        args = Config(**rl_common, num_generations=n, max_completion_length=h["rl_response_length"],
                      beta=0.0 if method == "grpo" else 0.05)
        trainer = encoded_prompts_trainer(Trainer, tok)(
            model=model, reward_funcs=relevance_reward, args=args, train_dataset=data, processing_class=tok,
            peft_config=lora_config(cfg, "CAUSAL_LM"), callbacks=[callback])
        if getattr(trainer, "ref_model", None) is not None:  # a separate KL reference (no LoRA): same two tokens
            restrict_to_answers(trainer.ref_model, tok, style)
        return trainer, tok
    if method == "ppo":
        return _ppo_trainer(cfg, common, callback, stats)
    if method == "contrastive":
        return _contrastive_trainer(cfg, common, callback, stats)
    if method.startswith("r2r-"):
        from bench.r2r.student import build_student

        return build_student(cfg, common, callback, stats)
    from bench.registry import lookup  # a method another package registers (entry point `rerank_bench.methods`)

    return lookup("methods", method).build(cfg, common, callback, stats)


def _ppo_trainer(cfg: dict, common: dict, callback, stats: dict):
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
    rows = rl_prompts(tok, items, style, h["max_length"], stats)
    prompt_ids = [prompts.encode(tok, r["prompt"])["input_ids"] for r in rows]
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
    policy, reference = causal_lm(model_dir), causal_lm(model_dir)
    for m in (policy, reference):  # the same two-token space for the policy and its KL reference
        restrict_to_answers(m, tok, style)
    # An explicit frozen reference model: trl's adapter-disabling path (ref_model=None with LoRA) reads
    # `model.policy` through the DDP wrapper that every Ray Train worker gets, and fails.
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=reference,
                         reward_model=reward_model, train_dataset=data, value_model=value_model,
                         eval_dataset=data.select(range(min(len(data), h["batch_size"]))),
                         peft_config=lora_config(cfg, "CAUSAL_LM"), callbacks=[callback])
    return trainer, tok


def _contrastive_trainer(cfg: dict, common: dict, callback, stats: dict):
    """A sentence-transformers bi-encoder fine-tuned on (query, chosen, rejected) triplets with
    MultipleNegativesRankingLoss: the other queries' items in the batch and the pair's rejected item
    are the negatives. Items are cut exactly as the bi-encoder scorer cuts them. All weights train."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments

    from bench.rerank import prompts

    h = cfg["hyper"]
    model = SentenceTransformer(cfg["model_dir"], device="cuda" if cfg["use_gpu"] else "cpu")
    model.max_seq_length = min(h["max_length"], model.max_seq_length or h["max_length"])
    room = model.max_seq_length - 2  # [CLS] and [SEP]

    def cut(text: str) -> str:
        out, was_cut = prompts.cut_to_tokens(model.tokenizer, text, room)
        stats["pairs"] = stats.get("pairs", 0) + 1
        stats["item_cut"] = stats.get("item_cut", 0) + int(was_cut)
        return out

    data = Dataset.from_list([{"anchor": p["query"], "positive": cut(p["chosen"]), "negative": cut(p["rejected"])}
                              for p in cfg["data"]["train_pairs"]])
    args = SentenceTransformerTrainingArguments(**common)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                         loss=losses.MultipleNegativesRankingLoss(model), callbacks=[callback])
    return trainer, model.tokenizer


LOSS_KEYS = {"ppo": ("loss/policy_avg",), "grpo": ("loss",), "rloo": ("loss",)}


# ----------------------------------------------------------------------------- evaluation
def trained_model(trainer, method: str):
    """The model that scores: PPO's policy, else the trainer's model (peft-wrapped), unwrapped from DDP."""
    if method == "ppo":
        return trainer.policy_model
    if method == "contrastive":
        return trainer.model
    return trainer.accelerator.unwrap_model(trainer.model)


def held_out_scores(cfg: dict, model, pairs: list[dict]):
    """Scores of the held-out pairs' items by the cell's own scorer over an already loaded model."""
    import numpy as np

    from bench.config import ScorerSpec
    from bench.rerank.scorers import SCORER_KINDS

    if not pairs:
        return {}
    spec = ScorerSpec(name=cfg["cell"], kind=cfg["scorer_kind"], model=cfg["model_dir"], prompt=cfg["prompt"],
                      max_length=cfg["hyper"]["max_length"], batch_size=cfg["score_batch_size"], dtype="float32")
    kind = SCORER_KINDS[spec.kind]
    if spec.kind == "bi-encoder":  # a SentenceTransformer: no separate tokenizer, no train/eval padding sides
        scorer = kind(spec, model=model)
        unique = sorted({(p["query"], t) for p in pairs for t in (p["chosen"], p["rejected"])})
        return dict(zip(unique, np.asarray(scorer.score([q for q, _ in unique], [t for _, t in unique]),
                                           dtype=np.float64)))
    tok = load_tokenizer(cfg["model_dir"], spec.max_length, kind.padding_side)
    was_training = model.training
    scorer = kind(spec, model=model, tokenizer=tok)
    unique = sorted({(p["query"], t) for p in pairs for t in (p["chosen"], p["rejected"])})
    scores = scorer.score([q for q, _ in unique], [t for _, t in unique])
    model.train(was_training)
    return dict(zip(unique, np.asarray(scores, dtype=np.float64)))


def pairwise_accuracy(scores: dict, pairs: list[dict]) -> float | None:
    """Share of held-out pairs whose chosen item the cell's scorer scores above the rejected one."""
    if not pairs:
        return None
    wins = sum(bool(scores[(p["query"], p["chosen"])] > scores[(p["query"], p["rejected"])]) for p in pairs)
    return float(wins / len(pairs))


def held_out_rows(cfg: dict) -> list[dict]:
    """What a cell scores on the valid split, before and after training: its preference pairs, and each
    judged item of its queries as a (query, item) row (for top-1 accuracy). Scored once, in one pass."""
    items = cfg["data"].get("valid_items") or []
    return cfg["data"]["valid_pairs"] + [{"query": it["query"], "chosen": it["text"], "rejected": it["text"]}
                                         for it in items]


def pairwise_loss(scores: dict, pairs: list[dict]) -> float | None:
    """The paper's Table 1 loss, the same for every method: mean over held-out pairs of the pairwise preference
    loss -log sigmoid(s_chosen - s_rejected) of the cell's own scorer (its single neuron)."""
    import numpy as np

    if not pairs:
        return None
    margins = np.array([scores[(p["query"], p["chosen"])] - scores[(p["query"], p["rejected"])] for p in pairs],
                       dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, -margins)))  # softplus(-m) = -log sigmoid(m), stable for large |m|


def top1_accuracy(scores: dict, items: list[dict]) -> tuple[float | None, int]:
    """The paper's Table 1 top-1 accuracy: share of held-out queries whose top-scored judged item has the
    query's highest grade (ties in grade all count as right; ties in score go to the first item of the list,
    which is ordered by grade, then first-stage rank: the order the lists are built in). (accuracy, queries)."""
    by_query: dict[str, list[dict]] = {}
    for it in items:
        by_query.setdefault(it["qid"], []).append(it)
    hits = []
    for rows in by_query.values():
        best_grade = max(it["grade"] for it in rows)
        top = max(range(len(rows)), key=lambda i: (scores[(rows[i]["query"], rows[i]["text"])], -i))
        hits.append(rows[top]["grade"] == best_grade)
    return (float(sum(hits) / len(hits)) if hits else None), len(hits)


def paper_table1_metrics(before: dict, after: dict, cfg: dict) -> dict:
    """Table 1's common columns, before and after training, from the held-out scores of `held_out_rows`."""
    pairs, items = cfg["data"]["valid_pairs"], cfg["data"].get("valid_items") or []
    top1_before, n_queries = top1_accuracy(before, items)
    return {"pair_loss_before": pairwise_loss(before, pairs), "pair_loss": pairwise_loss(after, pairs),
            "top1_before": top1_before, "top1_accuracy": top1_accuracy(after, items)[0],
            "n_valid_queries": n_queries}


def _zero_stage(trainer) -> int | None:
    """The ZeRO stage DeepSpeed actually ran with (None: no DeepSpeed engine)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    plugin = trainer.accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin is not None else None


def skip_deepspeed_shm_op() -> None:
    """DeepSpeed on CPU JIT-compiles a shared-memory all-reduce op (minutes) on first use; it is an
    optional speed-up over the process group's own all-reduce (gloo), so skip it unless asked for."""
    if os.environ.get("RERANK_BENCH_DS_SHM") == "1":
        return
    try:
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    except Exception:  # noqa: BLE001 - no DeepSpeed, nothing to skip
        pass


# ----------------------------------------------------------------------------- one cell
def train_cell(cfg: dict, work: Path, resume, progress: dict | None, rank: int, world: int) -> tuple[dict, Path]:
    """Train one cell; returns (metrics, directory with adapter/ or model/ and metrics.json).

    `progress` is the lane's record (done / failed cells) saved with every checkpoint reported to
    Ray Train; None trains without reporting (outside a Ray Train run)."""
    import numpy as np
    import torch

    torch.manual_seed(cfg["seed"])
    started = time.time()
    if cfg.get("deepspeed"):
        skip_deepspeed_shm_op()
    callback = make_report_callback(cfg, LOSS_KEYS.get(cfg["method"], ("loss",)), rank, progress)
    stats: dict = {}
    trainer, tok = build_trainer(cfg, str(work / "hf"), callback, world, stats)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our callback prints one progress line per logging step
    valid = cfg["data"]["valid_pairs"]
    before = held_out_scores(cfg, trained_model(trainer, cfg["method"]), held_out_rows(cfg)) if rank == 0 else {}
    train_started = time.time()
    if resume is not None and cfg["method"] != "ppo":
        curve = Path(resume) / "curve.json"
        if curve.is_file():
            callback.curve = [tuple(x) for x in json.loads(curve.read_text())]
        output = trainer.train(resume_from_checkpoint=str(Path(resume) / "checkpoint"))
    else:
        output = trainer.train()
    train_seconds = time.time() - train_started
    steps = int(trainer.state.global_step)
    h = cfg["hyper"]
    samples = steps * h["batch_size"] * h["grad_accum"] * world
    curve = callback.curve
    metrics = {"final_loss": curve[-1][1] if curve else float(output.training_loss or float("nan")),
               "first_loss": curve[0][1] if curve else None,
               "train_loss": float(getattr(output, "training_loss", None) or float("nan")) if output else None,
               "steps": steps, "samples": samples, "train_seconds": round(train_seconds, 2),
               "samples_per_s": round(samples / train_seconds, 3) if train_seconds > 0 else None,
               "world_size": world, "deepspeed_zero_stage": _zero_stage(trainer), "fitting": stats}
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    if rank == 0:
        whole = h["full_finetune"] or cfg["method"] == "contrastive"  # a bi-encoder is saved whole
        target = final / ("model" if whole else "adapter")
        model = trained_model(trainer, cfg["method"])
        after = held_out_scores(cfg, model, held_out_rows(cfg))
        if cfg["method"] == "ppo":
            model.save_pretrained(str(target))
        else:
            trainer.save_model(str(target))
        if h["full_finetune"] and cfg["method"] != "contrastive":
            tok.save_pretrained(str(target))
        metrics["accuracy_before"] = pairwise_accuracy(before, valid)
        metrics["pairwise_accuracy"] = pairwise_accuracy(after, valid)
        metrics.update(paper_table1_metrics(before, after, cfg))  # common loss and top-1 accuracy (Table 1)
        shift = [abs(after[k] - before[k]) for k in after]
        metrics["score_shift"] = float(np.mean(shift)) if shift else None
        metrics["n_valid_pairs"] = len(valid)
        metrics["stalled"] = learned_nothing(metrics)
        metrics["loss_curve"] = curve
        if getattr(trainer, "weight_history", None):  # R2R: how the loss weights moved
            metrics["loss_weights"] = trainer.weight_history
        if cfg["method"].startswith("r2r-"):  # the student writes its own reasons (R2R Table 3)
            from bench.r2r.student import write_reasons

            metrics["student_reasons"] = write_reasons(model, tok, cfg["data"].get("r2r_reference", []),
                                                       cfg["r2r"]["student_tokens"], cfg["r2r"]["passage_words"])
        metrics["seconds"] = round(time.time() - started, 2)  # build + before/after scoring + training
        (final / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if world > 1:
        torch.distributed.barrier()
    del trainer
    gc.collect()
    return metrics, final


def learned_nothing(m: dict) -> bool:
    """A cell whose scoring neuron did not move on the held-out items, or whose held-out accuracy and
    loss both stayed exactly where they started. (GRPO's logged loss is ~0 by construction, so a
    flat loss alone says nothing.)"""
    if m.get("score_shift") is not None and m["score_shift"] < 1e-4:
        return True
    first, last = m.get("first_loss"), m.get("final_loss")
    flat_loss = first is not None and last is not None and len(m.get("loss_curve") or []) > 1 and first == last
    return flat_loss and m.get("accuracy_before") == m.get("pairwise_accuracy")


# ----------------------------------------------------------------------------- the lane
def _read_progress(checkpoint) -> tuple[dict, str | None]:
    """(progress, local copy of the checkpoint when it holds a cell in progress)."""
    if checkpoint is None:
        return {"done": {}, "failed": {}}, None
    local = tempfile.mkdtemp(prefix="rb-resume-")
    checkpoint.to_directory(local)
    progress = json.loads((Path(local) / "progress.json").read_text())
    progress.setdefault("done", {})
    progress.setdefault("failed", {})
    if (Path(local) / "checkpoint").is_dir() and progress.get("current"):
        return progress, local
    shutil.rmtree(local, ignore_errors=True)
    return progress, None


def fetch_cell_output(path: str) -> str:
    """A finished cell's directory, local or from the run's storage (s3://, gs://)."""
    if "://" not in path and Path(path).is_dir():
        return path
    import ray.train

    local = tempfile.mkdtemp(prefix="rb-cell-")
    ray.train.Checkpoint(path).to_directory(local)
    return local


def train_lane(config: dict) -> None:
    """The Ray Train per-worker function: the lane's cells in order, resuming where a failure left off."""
    import ray.train
    import torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("cpus_per_worker", 1))))
    if config.get("pid_dir"):  # lets operators (and the fault-tolerance test) find this worker
        Path(config["pid_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(config["pid_dir"]) / f"rank{rank}.pid").write_text(str(os.getpid()))
    progress, resume_dir = _read_progress(ray.train.get_checkpoint())
    lane_dir = config["lane_dir"]  # where this lane's checkpoints land in the run's storage
    with tempfile.TemporaryDirectory(prefix="lane-") as work_root:
        for cfg in config["cells"]:
            key = cfg["key"]
            if key in progress["done"] or key in progress["failed"] or key in config.get("skip", ()):
                continue
            resume = resume_dir if progress.get("current") == key else None
            if rank == 0:
                emit_event(kind="cell", cell=cfg["cell"], key=key, state="resuming" if resume else "running",
                           pid=os.getpid())
            if cfg["method"] == "ppo" and cfg["rm"].get("key") in progress["done"]:
                cfg["rm"].update(reward_model_source(fetch_cell_output(progress["done"][cfg["rm"]["key"]]),
                                                     cfg["rm"]["model"]))
            if cfg["method"] == "ppo" and cfg["rm"].get("key") in progress["failed"]:
                progress["failed"][key] = f"reward model cell {cfg['rm']['cell']} failed"
                if rank == 0:
                    emit_event(kind="cell", cell=cfg["cell"], key=key, state="failed", error=progress["failed"][key])
                continue
            work = Path(work_root) / key
            work.mkdir(parents=True, exist_ok=True)
            try:
                metrics, final = train_cell(cfg, work, resume, progress, rank, world)
            except Exception as e:  # noqa: BLE001 - a failed cell must not stop the lane
                if world > 1:
                    raise  # ranks would disagree on where they are: let Ray Train restart the group
                progress["failed"][key] = one_line(e)
                emit_event(kind="cell", cell=cfg["cell"], key=key, state="failed", error=progress["failed"][key])
                tmp = progress_checkpoint(progress)
                ray.train.report({"cell": key, "state": "failed"}, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"failed-{key}")
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            finally:
                if resume is not None:
                    shutil.rmtree(resume, ignore_errors=True)
                    resume_dir = None
            progress["done"][key] = f"{lane_dir}/cell-{key}"
            progress.pop("current", None)
            if rank == 0:
                (final / "progress.json").write_text(json.dumps(progress))
                ray.train.report({"cell": key, "state": "trained"},
                                 checkpoint=ray.train.Checkpoint.from_directory(str(final)),
                                 checkpoint_dir_name=f"cell-{key}")
                emit_event(kind="cell", cell=cfg["cell"], key=key, state="trained", path=progress["done"][key],
                           **{k: metrics.get(k) for k in ("final_loss", "accuracy_before", "pairwise_accuracy",
                                                          "seconds", "train_seconds", "stalled")})
            else:
                ray.train.report({"cell": key, "state": "trained"}, checkpoint=None,
                                 checkpoint_dir_name=f"cell-{key}")
            shutil.rmtree(work, ignore_errors=True)
