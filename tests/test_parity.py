"""Training sees exactly the token ids that are scored (issue 18): compared as ids, never as strings.

For four tokenizer families (`tests/families.py`: a BOS-adding Llama-3-style tokenizer, a Mistral-style
one, SmolLM2's ChatML template, one without a chat template) every training method is built with its
real trl trainer and trained one step while a forward pre-hook records what the model is fed: the ids
of every row, with padding removed by the row's own attention mask (so a mask that hides real tokens
shows as missing ids). Each row must start with the ids the scorer feeds the model for one of the
training items - id for id - and go on with that item's answer token, if it goes on at all. The
scorer's ids are also checked against what SHAP's full coalition and a serving call (the same
`Scorer.score`) feed the model.

On the code before this test: trl tokenised prompt strings with the tokenizer's special tokens, so
Llama-3 / Mistral training saw a BOS (and after a chat template a second one) that scoring never
saw; SmolLM2's R2R students and PPO masked `<|im_end|>` (the pad token) inside every prompt; with
no chat template the answer token was "yes" where the prompt's continuation is " yes".
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from families import FAMILIES, build_family

STYLE = "chat"
ITEMS = [{"query": "ocean heat content", "text": "Argo floats measure temperature profiles of the upper ocean.",
          "relevant": True},
         {"query": "ocean heat content", "text": "Soil carbon stocks of boreal forests.", "relevant": False}]
PAIRS = [{"query": "ocean heat content", "chosen": ITEMS[0]["text"], "rejected": ITEMS[1]["text"],
          "chosen_judged": True, "rejected_judged": True}]
METHODS = ("sft", "dpo", "rm", "ppo", "grpo", "rloo", "r2r-pairwise")


class Fed:
    """Every row a Llama body is fed during training: its attended ids (padding removed by its mask)."""

    def __init__(self, *models):
        self.rows: list[list[int]] = []
        self.handles = [m.register_forward_pre_hook(self.hook, with_kwargs=True)
                        for model in models if model is not None for m in model.modules()
                        if type(m).__name__ == "LlamaModel"]

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is None or (mask is not None and mask.shape[-1] != ids.shape[-1]):
            return  # embeddings only, or an incremental decoding step (one new token over a cache)
        for i, row in enumerate(ids):
            self.rows.append((row if mask is None else row[mask[i].bool()]).tolist())

    def close(self):
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: build_family(f, root / f) for f in FAMILIES}


def _cell(method: str, model_dir: str, rm: dict | None = None) -> dict:
    from bench.train.config import Hyperparameters
    from bench.train.grid import scorer_kind

    # GRPO / RLOO: 2 prompts x 2 generations per step; PPO's loader drops a last batch larger than the data
    hyper = Hyperparameters(epochs=1, max_steps=1, batch_size=2 if method == "ppo" else 4, max_length=256, lora_r=2, lora_alpha=4,
                            logging_steps=1, save_steps=100, rl_generations=2).model_dump()
    lists = [{"qid": "q1", "query": ITEMS[0]["query"], "docids": ["d0", "d1"], "direct": {}, "compare": []}]
    return {"cell": f"parity-{method}", "key": method, "method": method, "model_dir": model_dir, "prompt": STYLE,
            "hyper": hyper, "seed": 0, "scorer_kind": scorer_kind(method, "llama"), "score_batch_size": 4,
            "use_gpu": False, "deepspeed": None, "rm": rm or {},
            "r2r": {"margin": 1.0, "list_temperature": 1.0, "reason_words": 20, "passage_words": 20,
                    "student_tokens": 4, "loss_weights": "uncertainty"},
            "data": {"train_items": ITEMS, "train_pairs": PAIRS, "valid_pairs": PAIRS, "r2r_lists": lists,
                     "r2r_texts": {"d0": ITEMS[0]["text"], "d1": ITEMS[1]["text"]}, "r2r_reference": []}}


def _fed_in_one_step(cfg: dict, work: Path) -> list[list[int]]:
    from transformers import TrainerCallback

    from bench.train.methods import build_trainer

    trainer, _ = build_trainer(cfg, str(work / cfg["method"]), TrainerCallback(), 1, {})
    fed = Fed(trainer.model, getattr(trainer, "ref_model", None))
    try:
        trainer.train()
    finally:
        fed.close()
    if cfg["method"] == "rm":
        trainer.save_model(str(work / "rm-adapter"))
    return fed.rows


def _scorer(kind: str, model_dir: str):
    from bench.config import ScorerSpec
    from bench.rerank.scorers import SCORER_KINDS

    return SCORER_KINDS[kind](ScorerSpec(name="s", kind=kind, model=model_dir, prompt=STYLE, max_length=256,
                                         batch_size=4, dtype="float32"), model_dir)


def _scored_ids(scorer) -> list[list[int]]:
    return [scorer.fit(it["query"], it["text"]).encoding["input_ids"] for it in ITEMS]


@pytest.mark.parametrize("family", FAMILIES)
def test_token_parity_every_method_trains_on_the_ids_it_is_scored_on(family, family_dirs, tmp_path):
    from bench.rerank import prompts

    model_dir = family_dirs[family]
    relevance, reward = _scorer("relevance-token", model_dir), _scorer("reward-head", model_dir)
    answers = set(prompts.answer_token_ids(relevance.tokenizer, STYLE))
    mismatches = {}
    for method in METHODS:
        rm = {"model": model_dir, "adapter": str(tmp_path / "rm-adapter"), "key": "rm"} if method == "ppo" else None
        rows = _fed_in_one_step(_cell(method, model_dir, rm), tmp_path)
        expected = _scored_ids(reward if method == "rm" else relevance)
        assert rows, method
        bad = []
        for row in rows:
            match = [e for e in expected if row[: len(e)] == e]
            if not match or (len(row) > len(match[0]) and row[len(match[0])] not in answers):
                bad.append(row)
        seen = [e for e in expected if any(row[: len(e)] == e for row in rows)]
        if bad or len(seen) != len(expected):
            tok = relevance.tokenizer
            mismatches[method] = {"fed": tok.decode(bad[0]) if bad else None, "scored": tok.decode(expected[0]),
                                  "fed_ids": bad[0][:12] if bad else None, "scored_ids": expected[0][:12]}
    assert not mismatches, json.dumps(mismatches, indent=1)[:3000]


@pytest.mark.parametrize("family", FAMILIES)
def test_token_parity_shap_and_serving_feed_the_scorer_ids(family, family_dirs):
    """SHAP's full coalition and a serving call (`Scorer.score`, what the API deployment calls) feed the
    model exactly `Scorer.fit`'s encoding, and the answer token is the prompt's own continuation."""
    from bench.explain.config import ExplainConfig
    from bench.explain.kernel_shap import explain_item
    from bench.rerank import prompts

    scorer = _scorer("relevance-token", family_dirs[family])
    expected = _scored_ids(scorer)
    fed = Fed(scorer.model)
    try:
        scorer.score([it["query"] for it in ITEMS], [it["text"] for it in ITEMS])
        served = list(fed.rows)
        explain_item(scorer, ITEMS[0]["query"], ITEMS[0]["text"], ExplainConfig(nsamples=8, ks=[1]), seed=0)
    finally:
        fed.close()
    assert sorted(served) == sorted(expected)
    assert expected[0] in fed.rows[len(served):]  # the all-present coalition is the ranked input
    tok = scorer.tokenizer
    prompt = prompts.relevance_prompt(tok, ITEMS[0]["query"], ITEMS[0]["text"], STYLE)
    for relevant, token in zip((True, False), prompts.answer_token_ids(tok, STYLE)):
        continued = prompts.encode(tok, prompt + prompts.answer_text(tok, relevant, STYLE))["input_ids"]
        assert continued[: len(expected[0]) + 1] == expected[0] + [token]


def test_token_parity_the_pad_token_never_occurs_in_a_prompt(family_dirs):
    """The pad token must not be a token prompts contain: PPO and sequence-classification heads find
    padding by `ids == pad_id`. SmolLM2 pads with `<|im_end|>`, written into every chat prompt."""
    from bench.rerank import prompts

    for family, model_dir in family_dirs.items():
        tok = _scorer("relevance-token", model_dir).tokenizer
        ids = prompts.encode(tok, prompts.relevance_prompt(tok, "q", "d", STYLE))["input_ids"]
        assert tok.pad_token_id not in ids, (family, tok.pad_token)


class FedBert:
    """Every row a BERT body is fed: attended ids, their segment ids, and whether the mask is one prefix."""

    def __init__(self, model):
        self.rows: list[tuple] = []
        self.handles = [m.register_forward_pre_hook(self.hook, with_kwargs=True) for m in model.modules()
                        if type(m).__name__ == "BertModel"]

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask, types = kwargs.get("attention_mask"), kwargs.get("token_type_ids")
        for i, row in enumerate(ids):
            keep = mask[i].bool()
            self.rows.append((tuple(row[keep].tolist()), None if types is None else tuple(types[i][keep].tolist()),
                              bool(mask[i][: int(mask[i].sum())].all())))

    def close(self):
        for h in self.handles:
            h.remove()


def test_token_parity_the_cross_encoder_trains_on_the_ids_segments_and_mask_it_is_scored_on(tmp_path):
    """all-MiniLM-L6-v2 as the encoder family's reward model (`rm` trains a `cross-encoder`): one RewardTrainer
    step feeds BERT, row for row, the ids, segment ids (query 0, item 1) and right-padded attention mask that
    `CrossEncoderScorer` feeds it for the same pairs once the cell is saved and loaded as the rerank stage loads
    it; and the saved cell scores what the worker scored in memory (the held-out accuracy of Table 1).
    (Issue 18 item 10 checked this first for the Climate-FEVER cross-encoder; it held there too.)"""
    from transformers import TrainerCallback

    from bench.config import ScorerSpec
    from bench.models import minilm_dir
    from bench.rerank.scorers import build_scorer
    from bench.train.methods import build_trainer, held_out_scores

    pairs = PAIRS + [{"query": "why do glaciers retreat when summers warm", "chosen": ITEMS[0]["text"] * 2,
                      "rejected": ITEMS[1]["text"], "chosen_judged": True, "rejected_judged": True}]
    cfg = _cell("rm", str(minilm_dir()))
    cfg["scorer_kind"], cfg["hyper"]["full_finetune"] = "cross-encoder", True
    cfg["data"] = {**cfg["data"], "train_pairs": pairs, "valid_pairs": pairs}
    trainer, tok = build_trainer(cfg, str(tmp_path / "hf"), TrainerCallback(), 1, {})
    fed = FedBert(trainer.model)
    try:
        trainer.train()
    finally:
        fed.close()
    trainer.save_model(str(tmp_path / "model"))
    tok.save_pretrained(str(tmp_path / "model"))
    rows = [{"query": p["query"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    in_memory = held_out_scores(cfg, trainer.accelerator.unwrap_model(trainer.model), rows)
    scorer = build_scorer(ScorerSpec(name="ce", kind="cross-encoder", model=str(tmp_path / "model"), max_length=256,
                                     batch_size=4, dtype="float32"))
    served = FedBert(scorer.model)
    try:
        keys = sorted(in_memory)
        loaded = scorer.score([q for q, _ in keys], [t for _, t in keys])
    finally:
        served.close()
    trained = fed.rows[: 2 * len(pairs)]  # the training step: chosen rows, then rejected rows
    assert len({r[0] for r in trained}) == 4 and len({len(r[0]) for r in trained}) > 1  # padding was needed
    assert all(r[1] is not None and 0 < sum(r[1]) < len(r[1]) for r in trained), "query and item segments"
    assert all(r[2] for r in trained + served.rows), "right padding: the mask is one prefix per row"
    assert sorted(trained) == sorted(served.rows)
    assert max(abs(in_memory[k] - s) for k, s in zip(keys, loaded)) < 1e-5
