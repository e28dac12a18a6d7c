"""R2R students: a causal LM trained to rank with the project's single relevance neuron and to write
the teacher's reasons, in a transformers `Trainer` whose loss is `bench.r2r.losses.Combined`.

One training example is one query: its candidates as relevance prompts (fitted exactly as the
scorer reads them; left-padded so the answer position is the last) with the teacher's ranks, plus,
for the reasoning variants, the teacher's reasons as generation targets (chat prompt -> reason;
cross-entropy on the reason's tokens only). The neuron, logit("yes") - logit("no") at the answer
position, is the student's score: a trained R2R cell re-ranks, explains (SHAP) and serves like
every other cell. `write_reasons` lets a trained student write its own reasons (R2R Table 3).
"""
from __future__ import annotations

import torch

from bench.r2r import prompts
from bench.r2r.config import VARIANTS
from bench.rerank import prompts as rprompts
from bench.r2r.losses import Combined


def examples(cfg: dict, tok, stats: dict) -> list[dict]:
    """Tokenised training examples of a cell's teacher lists, for its variant."""
    h, style = cfg["hyper"], cfg["prompt"]
    _, reasons = VARIANTS[cfg["method"]]
    fitter = rprompts.relevance_fitter(tok, h["max_length"], style)
    words = cfg["r2r"]["reason_words"]
    out = []
    for tl in cfg["data"]["r2r_lists"]:
        texts = cfg["data"]["r2r_texts"]
        ids = []
        for d in tl["docids"]:
            pair = fitter.fit(tl["query"], texts[d])
            stats["pairs"] = stats.get("pairs", 0) + 1
            stats["item_cut"] = stats.get("item_cut", 0) + int(pair.item_cut)
            stats["query_cut"] = stats.get("query_cut", 0) + int(pair.query_cut)
            ids.append(pair.encoding["input_ids"])
        gen = []
        clip = lambda d: prompts.clip_words(texts[d], cfg["r2r"]["passage_words"])  # noqa: E731
        if "direct" in reasons:
            gen += [(prompts.direct_prompt(tl["query"], clip(d)), text) for d, text in tl["direct"].items()]
        if "compare" in reasons:
            gen += [(prompts.compare_prompt(tl["query"], clip(c["higher"]), clip(c["lower"])), c["text"])
                    for c in tl["compare"]]
        out.append({"list_ids": ids, "ranks": list(range(1, len(ids) + 1)),
                    "gen": [generation_example(tok, p, prompts.clip_words(t, words), h["max_length"]) for p, t in gen]})
    return out


def chat_prompt(tok, prompt: str) -> str:
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(prompts.messages(prompt), add_generation_prompt=True, tokenize=False)
    return f"{prompts.SYSTEM}\n{prompt}\nAnswer:"


def generation_example(tok, prompt: str, target: str, max_length: int) -> dict:
    """input_ids and labels (-100 on the prompt): the loss is on the reason's tokens only. The prompt is
    encoded as `write_reasons` encodes it when the student writes (`rerank.prompts.encode`)."""
    p = rprompts.encode(tok, chat_prompt(tok, prompt))["input_ids"]
    t = tok(" " + target.strip() + (tok.eos_token or ""), add_special_tokens=False)["input_ids"]
    p = p[-(max_length - min(len(t), max_length // 2)):]  # keep the prompt's end (its question) if it is long
    t = t[: max_length - len(p)]
    return {"input_ids": p + t, "labels": [-100] * len(p) + t}


def _pad(seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs])


def _mask(seqs: list[list[int]], left: bool) -> torch.Tensor:
    """1 on every real token, 0 on padding, from the lengths: never `ids != pad_id`, which hides real tokens
    when the pad id also occurs in the text (SmolLM2's `<|im_end|>` is written into every chat prompt)."""
    return _pad([[1] * len(s) for s in seqs], 0, left)


def collate(pad_id: int):
    def fn(batch: list[dict]) -> dict:
        return {"queries": batch, "pad_id": pad_id}
    return fn


class StudentTrainer:
    """Builds the `transformers.Trainer` subclass lazily (transformers is imported in the worker)."""

    @staticmethod
    def build(model, args, data, tok, callbacks, objective: Combined, yes_id: int, no_id: int):
        from transformers import Trainer

        terms = objective.terms

        class R2RTrainer(Trainer):
            def create_optimizer(self, *args, **kwargs):
                """The model's optimizer plus the learnable loss weights (kept outside the model: DDP wraps only
                the model; each data-parallel worker learns its own weights; not saved with the adapter)."""
                optimizer = super().create_optimizer(*args, **kwargs)
                if objective.weights is not None:
                    optimizer.add_param_group({"params": list(objective.parameters()), "weight_decay": 0.0})
                return optimizer

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                pad = inputs["pad_id"]
                device = next(model.parameters()).device
                objective.to(device)  # the loss weights live where the losses are (in place: the optimizer keeps them)
                total, logs = 0.0, {}
                for q in inputs["queries"]:
                    ids = _pad(q["list_ids"], pad, left=True).to(device)
                    mask = _mask(q["list_ids"], left=True).to(device)
                    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
                    scores = logits[:, yes_id] - logits[:, no_id]
                    gen = None
                    if q["gen"] and "gen" in terms:
                        gids = _pad([g["input_ids"] for g in q["gen"]], pad, left=False).to(device)
                        labels = _pad([g["labels"] for g in q["gen"]], -100, left=False).to(device)
                        gmask = _mask([g["input_ids"] for g in q["gen"]], left=False).to(device)
                        gen = model(input_ids=gids, attention_mask=gmask, labels=labels).loss
                    loss, parts = objective(scores, torch.tensor(q["ranks"], device=device), gen)
                    total = total + loss / len(inputs["queries"])
                    for k, v in parts.items():
                        logs[k] = logs.get(k, 0.0) + v / len(inputs["queries"])
                self._r2r_logs = logs
                return total

            def log(self, logs, *args, **kwargs):
                r2r = getattr(self, "_r2r_logs", {})
                if r2r:  # the loss weights over training (metrics.json `loss_weights`, R2R Table 1)
                    self.weight_history.append({"step": int(self.state.global_step),
                                                **{k[len("weight_"):]: round(v, 4) for k, v in r2r.items()
                                                   if k.startswith("weight_")}})
                logs = {**logs, **{k: round(v, 4) for k, v in r2r.items()}}
                return super().log(logs, *args, **kwargs)

        trainer = R2RTrainer(model=model, args=args, train_dataset=data, data_collator=collate(tok.pad_token_id),
                             processing_class=tok, callbacks=callbacks)
        trainer.weight_history = []
        return trainer


def build_student(cfg: dict, common: dict, callback, stats: dict):
    """The R2R variant's trainer over LoRA (or all weights) of the cell's causal LM; (trainer, tokenizer)."""
    from peft import get_peft_model
    from transformers import TrainingArguments

    from bench.model_loading import causal_lm, load_tokenizer, lora_config

    h = cfg["hyper"]
    tok = load_tokenizer(cfg["model_dir"], h["max_length"], padding_side="left")
    data = examples(cfg, tok, stats)
    model = causal_lm(cfg["model_dir"])
    lora = lora_config(cfg, "CAUSAL_LM")
    if lora is not None:
        model = get_peft_model(model, lora)
    terms, _ = VARIANTS[cfg["method"]]
    yes_id, no_id = rprompts.answer_token_ids(tok, cfg["prompt"])
    args = TrainingArguments(**common, remove_unused_columns=False)
    r2r = cfg["r2r"]
    objective = Combined(terms, r2r["margin"], r2r["list_temperature"], r2r.get("loss_weights", "uncertainty"),
                         tuple(r2r.get("fixed_weights", (1.0, 1.0, 1.0))))
    trainer = StudentTrainer.build(model, args, data, tok, [callback], objective, yes_id, no_id)
    return trainer, tok


def write_reasons(model, tok, references: list[dict], max_new_tokens: int, passage_words: int) -> list[dict]:
    """The student's own direct-relevance reasons for the reference (query, document) pairs (greedy)."""
    if not references:
        return []
    prompts_ = [chat_prompt(tok, prompts.direct_prompt(r["query"], prompts.clip_words(r["text"], passage_words)))
                for r in references]
    out = []
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(prompts_), 4):
            ids = [rprompts.encode(tok, p)["input_ids"] for p in prompts_[start:start + 4]]
            enc = {"input_ids": _pad(ids, tok.pad_token_id, left=True).to(device),
                   "attention_mask": _mask(ids, left=True).to(device)}
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            for r, ids in zip(references[start:start + 4], gen[:, enc["input_ids"].shape[1]:]):
                out.append({**r, "student": tok.decode(ids, skip_special_tokens=True).strip()})
    return out
