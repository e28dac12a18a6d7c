"""Why the MiniLM cross-encoder trained by reward modelling falls below BM25 on Climate-FEVER (issue 18, item 10).

Reads the cached stages of `configs/climate-fever-diagnosis.yaml` (the in-domain half of
`configs/climate-fever.yaml`: same claims, split, seed, cells) and writes one JSON of diagnostics. Run from the
repository root after `rerank-bench run configs/climate-fever-diagnosis.yaml`:

  python scripts/climate_fever_diagnosis.py analyse   # judged vs unjudged, pairwise accuracy, BM25 agreement
  python scripts/climate_fever_diagnosis.py parity    # what RewardTrainer feeds BERT vs what the scorer feeds it
  python scripts/climate_fever_diagnosis.py curve --negatives none --steps 600 --every 100
  python scripts/climate_fever_diagnosis.py curve --negatives first-stage --depth 30 --steps 300 --every 50

`analyse` re-scores every test claim's BM25 top 30 and all its judged items with each system's own scorer
(the cached cells' saved weights, loaded as the rerank stage loads them), checks that the re-ranking it
derives reproduces the harness's cached run, and reports per system (means over the 120 test claims, each with
a BCa bootstrap 95 % interval over claims, `bench.evaluate.significance.mean_ci`):
- nDCG@10 of the depth-30 re-ranking on full lists and on condensed lists (unjudged documents removed, Sakai
  2007), and of a depth-10 re-ranking;
- pairwise accuracy on the test claims' judged preference pairs (top-5 x bottom-5, as trained);
- where judged-relevant, judged-non-relevant and unjudged candidates land (mean rank in the top 30, share of
  the top 10), and the Spearman correlation of the system's scores with BM25's over the top 30;
- two model-free references: BM25 itself and BM25 reversed (the top 30 in ascending BM25 order).
`curve` trains the cross-encoder cell in-process with the harness's own trainer (`build_trainer`, the cell's
config as the grid builds it) and evaluates the test claims every `--every` steps; `--negatives first-stage`
builds the pairs with the harness's `train.negatives: first-stage` (unjudged BM25 candidates within
`train.depth`, 10 unless `--depth`, join the judged list as grade 0, so the bottom 5 are the lowest-ranked of
them). The results are in results/reference/climate-fever/diagnosis/ (PROVENANCE.md there).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASET = "climate-fever"
CE = "MiniLM-L6-CE-rm"


# ----------------------------------------------------------------------------- shared
def pipeline(config: str):
    from bench.config import load_experiment
    from bench.pipeline import Pipeline

    return Pipeline(load_experiment(config))


def ci(values, seed: int = 42) -> dict:
    from bench.evaluate.significance import mean_ci

    values = np.asarray(values, float)
    low, high = mean_ci(values, seed)
    return {"mean": round(float(values.mean()), 4), "ci95": [round(low, 4), round(high, 4)], "n": int(len(values))}


def bm25_scores(col, qids: list[str], retrieve_cfg) -> dict[str, dict[str, float]]:
    """BM25's score of every pool sentence for each claim (the first stage's index and settings)."""
    from bench.retrieve.bm25 import BM25Index

    docids = list(col.corpus)
    texts = [col.corpus[d].full_text() if retrieve_cfg.title_field else col.corpus[d].text for d in docids]
    index = BM25Index(texts, retrieve_cfg)
    idx, sc = index.search([col.queries[q] for q in qids], k=len(docids))
    return {q: {docids[int(j)]: float(s) for j, s in zip(idx[r], sc[r])} for r, q in enumerate(qids)}


def ranking(scores: dict[str, float], docs: list[str]) -> dict[str, float]:
    return {d: float(scores[d]) for d in docs}


def ndcg10(run: dict[str, dict[str, float]], qrels: dict, qids: list[str], condensed: bool = False) -> np.ndarray:
    """Per-claim nDCG@10 (ir-measures, as the harness evaluates); `condensed`: unjudged documents removed."""
    from bench.data.collection import Run
    from bench.evaluate.ir import per_query

    if condensed:
        run = {q: {d: s for d, s in docs.items() if d in qrels[q]} for q, docs in run.items()}
    df = per_query(Run("s", run), {q: qrels[q] for q in qids}, ["nDCG@10"], DATASET, qids)
    return df.set_index("qid").loc[qids, "value"].to_numpy(float)


def test_pairs(p, qids):
    from bench.data.pairs import preference_pairs

    return preference_pairs(p.dataset(DATASET).collection, p.first_stage(DATASET).run, qids, p.exp.train.depth)


def pairwise_per_claim(scores: dict[str, dict[str, float]], pairs) -> np.ndarray:
    by: dict[str, list[bool]] = {}
    for pp in pairs:
        by.setdefault(pp.qid, []).append(scores[pp.qid][pp.chosen_docid] > scores[pp.qid][pp.rejected_docid])
    return np.array([np.mean(v) for _, v in sorted(by.items())], float)


def evaluate_scores(name: str, scores: dict[str, dict[str, float]], col, bm25, top30, qids, pairs) -> dict:
    """Every diagnostic of one system from its scores of each claim's top 30 and judged items."""
    from scipy.stats import spearmanr

    qrels = col.qrels
    run30 = {q: ranking(scores[q], top30[q]) for q in qids}
    run10 = {q: ranking(scores[q], top30[q][:10]) for q in qids}
    where = {"judged_relevant": [], "judged_nonrelevant": [], "unjudged": []}
    top10_share = {k: [] for k in where}
    rho, top10_same_article = [], []
    above = {"judged relevant above unjudged": [], "judged relevant above judged non-relevant": [],
             "judged non-relevant above unjudged": []}
    for q in qids:
        order = sorted(top30[q], key=lambda d: -run30[q][d])
        cls = {d: ("unjudged" if d not in qrels[q] else "judged_relevant" if qrels[q][d] > 0 else "judged_nonrelevant")
               for d in order}
        for k in where:
            ranks = [i + 1 for i, d in enumerate(order) if cls[d] == k]
            if ranks:
                where[k].append(np.mean(ranks))
            top10_share[k].append(sum(cls[d] == k for d in order[:10]) / 10)
        for k, (a, b) in zip(above, (("judged_relevant", "unjudged"), ("judged_relevant", "judged_nonrelevant"),
                                     ("judged_nonrelevant", "unjudged"))):
            sa = [run30[q][d] for d in order if cls[d] == a]
            sb = [run30[q][d] for d in order if cls[d] == b]
            if sa and sb:  # the share of (a, b) candidate pairs of this claim that the system orders a first
                above[k].append(np.mean([x > y for x in sa for y in sb]))
        rho.append(spearmanr([run30[q][d] for d in top30[q]], [bm25[q][d] for d in top30[q]]).statistic)
        articles = {col.corpus[d].title for d, g in qrels[q].items() if g > 0}
        unj = [d for d in order[:10] if cls[d] == "unjudged"]
        if unj:
            top10_same_article.append(np.mean([col.corpus[d].title in articles for d in unj]))
    return {"system": name,
            "nDCG@10 full (depth 30)": ci(ndcg10(run30, qrels, qids)),
            "nDCG@10 condensed (depth 30)": ci(ndcg10(run30, qrels, qids, condensed=True)),
            "nDCG@10 full (depth 10)": ci(ndcg10(run10, qrels, qids)),
            "nDCG@10 condensed (depth 10)": ci(ndcg10(run10, qrels, qids, condensed=True)),
            "pairwise accuracy, test judged pairs": ci(pairwise_per_claim(scores, pairs)),
            "mean rank in top 30": {k: ci(v) for k, v in where.items()},
            "share of top 10": {k: ci(v) for k, v in top10_share.items()},
            "share of candidate pairs in the top 30 ordered": {k: ci(v) for k, v in above.items()},
            "spearman with BM25 over top 30": ci(np.nan_to_num(rho)),
            "unjudged top-10 sentences from an article of the claim's evidence": ci(top10_same_article)}, run30


def score_with(spec, col, need: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    from bench.rerank.scorers import build_scorer

    scorer = build_scorer(spec)
    rows = [(q, d) for q in need for d in need[q]]
    s = scorer.score([col.queries[q] for q, _ in rows], [col.corpus[d].full_text() for _, d in rows])
    out: dict[str, dict[str, float]] = {}
    for (q, d), v in zip(rows, s):
        out.setdefault(q, {})[d] = float(v)
    return out


# ----------------------------------------------------------------------------- analyse
def analyse(args) -> dict:
    from bench.data.pairs import preference_pairs

    p = pipeline(args.config)
    ds = p.dataset(DATASET)
    col, bm = ds.collection, p.first_stage(DATASET).run
    qids = ds.qids("test")
    depth = p.exp.rerank.depth
    top30 = {q: [d for d, _ in bm.ranked(q, depth)] for q in qids}
    pairs = test_pairs(p, qids)
    t0 = time.time()
    split_qids = {s: ds.qids(s) for s in ("train", "valid", "test")}
    bm_all = bm25_scores(col, sorted(set().union(*split_qids.values())), p.exp.retrieve)
    out: dict = {"config": args.config, "test_claims": len(qids), "depth": depth, "test_pairs": len(pairs)}

    # the data: what BM25's top 30 holds, and how BM25 orders the judged pairs the cells train on
    comp = {k: [] for k in ("judged_relevant in top 30", "judged_nonrelevant in top 30", "unjudged in top 30",
                            "judged_relevant in top 10", "judged_nonrelevant in top 10", "unjudged in top 10")}
    negs_top = []
    for q in qids:
        g = col.qrels[q]
        for k, docs in (("30", top30[q]), ("10", top30[q][:10])):
            comp[f"judged_relevant in top {k}"].append(sum(g.get(d, -1) > 0 for d in docs))
            comp[f"judged_nonrelevant in top {k}"].append(sum(g.get(d, -1) == 0 for d in docs))
            comp[f"unjudged in top {k}"].append(sum(d not in g for d in docs))
        nonev = [d for d in top30[q] if g.get(d, -1) <= 0]
        negs_top.append(set(nonev[:5]) == {d for d, v in g.items() if v == 0})
    out["top-30 composition (test claims)"] = {k: ci(v) for k, v in comp.items()}
    out["share of test claims whose 5 judged negatives are BM25's 5 highest-ranked non-evidence"] = \
        round(float(np.mean(negs_top)), 4)
    out["BM25 pairwise accuracy on judged pairs, by split (micro, all pairs)"] = {}
    for s, sq in split_qids.items():
        pp = preference_pairs(col, bm, sq, p.exp.train.depth)
        acc = pairwise_per_claim(bm_all, pp)
        micro = float(np.mean([bm_all[x.qid][x.chosen_docid] > bm_all[x.qid][x.rejected_docid] for x in pp]))
        out["BM25 pairwise accuracy on judged pairs, by split (micro, all pairs)"][s] = {
            "pairs": len(pp), "micro": round(micro, 4), "per-claim mean": ci(acc)}

    # the systems
    need = {q: list(dict.fromkeys(top30[q] + list(col.qrels[q]))) for q in qids}
    systems = [("BM25", {q: bm_all[q] for q in qids}),
               ("BM25 reversed", {q: {d: -v for d, v in bm_all[q].items()} for q in qids})]
    cached = {name: sr for (n, name), sr in p.rerank_all().items() if n == DATASET}
    parity = {}
    for spec, info in p.system_specs():
        scores = score_with(spec, col, need)
        systems.append((spec.name, scores))
        harness = cached[spec.name].run.scores
        parity[spec.name] = max(abs(harness[q][d] - scores[q][d]) for q in qids for d in top30[q])
    out["max |score here - score in the harness's cached run| over the test top 30s"] = parity
    out["systems"] = []
    from bench.evaluate.significance import difference_ci

    per_claim = {}
    for name, scores in systems:
        res, run30 = evaluate_scores(name, scores, col, bm_all, top30, qids, pairs)
        per_claim[name] = {"full": ndcg10(run30, col.qrels, qids),
                           "condensed": ndcg10(run30, col.qrels, qids, condensed=True)}
        out["systems"].append(res)
        print(json.dumps(res), flush=True)
    rng, shuffled = np.random.default_rng(0), {"full": [], "condensed": []}
    for _ in range(100):  # the top 30 in random order: what a re-ranker without any signal scores
        run = {q: dict(zip(top30[q], rng.random(len(top30[q])).tolist())) for q in qids}
        shuffled["full"].append(ndcg10(run, col.qrels, qids))
        shuffled["condensed"].append(ndcg10(run, col.qrels, qids, condensed=True))
    out["random order of the top 30, nDCG@10 (per claim: mean of 100 shuffles)"] = {
        k: ci(np.mean(v, axis=0)) for k, v in shuffled.items()}
    out["difference to BM25, nDCG@10 (t interval)"] = {
        name: {kind: {"mean": round(float((v[kind] - per_claim["BM25"][kind]).mean()), 4),
                      "ci95": [round(x, 4) for x in difference_ci(v[kind], per_claim["BM25"][kind])]}
               for kind in ("full", "condensed")}
        for name, v in per_claim.items() if name != "BM25"}
    out["per-claim nDCG@10 full (depth 30)"] = {name: dict(zip(qids, np.round(v["full"], 6).tolist()))
                                               for name, v in per_claim.items()}
    out["seconds"] = round(time.time() - t0, 1)
    return out


# ----------------------------------------------------------------------------- parity
class Fed:
    """What every BertModel forward is fed: per row, the attended ids, their segment ids, and the mask."""

    def __init__(self, model):
        self.rows: list[dict] = []
        self.handles = [m.register_forward_pre_hook(self.hook, with_kwargs=True) for m in model.modules()
                        if type(m).__name__ == "BertModel"]

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask, types = kwargs.get("attention_mask"), kwargs.get("token_type_ids")
        for i, row in enumerate(ids):
            keep = mask[i].bool() if mask is not None else np.ones(len(row), bool)
            self.rows.append({"ids": row[keep].tolist(),
                              "types": None if types is None else types[i][keep].tolist(),
                              "mask_is_prefix": mask is None or bool(mask[i][: int(mask[i].sum())].all()),
                              "width": int(len(row))})

    def close(self):
        for h in self.handles:
            h.remove()


def cell_config(p, negatives: str = "none", depth: int | None = None) -> dict:
    """The CE cell's worker config exactly as the grid builds it (`TrainGrid.loop_config`)."""
    from bench.train.grid import TrainGrid

    cfg = p.exp.train.model_copy(update={"negatives": negatives, **({"depth": depth} if depth else {})})
    grid = TrainGrid(p, cfg=cfg)
    cell = next(c for c in grid.plan() if c.method == "rm")
    return grid.loop_config([cell], {})["cells"][0]


def parity(args) -> dict:
    from transformers import TrainerCallback

    from bench.config import ScorerSpec
    from bench.rerank.scorers import build_scorer
    from bench.train.methods import build_trainer, held_out_scores

    p = pipeline(args.config)
    cfg = cell_config(p)
    pairs = cfg["data"]["train_pairs"][:: max(1, len(cfg["data"]["train_pairs"]) // 8)][:8]
    cfg["data"] = {**cfg["data"], "train_pairs": pairs}
    cfg["hyper"] = {**cfg["hyper"], "max_steps": 1, "batch_size": len(pairs), "save_steps": 1000}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer, tok = build_trainer(cfg, tmp + "/hf", TrainerCallback(), 1, {})
        fed = Fed(trainer.model)
        trainer.train()
        fed.close()
        trainer.save_model(tmp + "/model")
        tok.save_pretrained(tmp + "/model")
        model = trainer.accelerator.unwrap_model(trainer.model)
        rows = [{"query": x["query"], "chosen": x["chosen"], "rejected": x["rejected"]} for x in pairs]
        in_memory = held_out_scores(cfg, model, rows)  # how the worker scores held-out pairs
        spec = ScorerSpec(name="ce", kind="cross-encoder", model=tmp + "/model", max_length=cfg["hyper"]["max_length"],
                          batch_size=cfg["score_batch_size"], dtype="float32")
        scorer = build_scorer(spec)  # how the rerank stage loads a trained cell
        served = Fed(scorer.model)
        keys = sorted(in_memory)
        loaded = scorer.score([q for q, _ in keys], [t for _, t in keys])
        served.close()
    trained = fed.rows[: 2 * len(pairs)]  # the training step's forward (chosen rows, then rejected rows)
    scored = {tuple(r["ids"]): r for r in served.rows}
    same_ids = [tuple(r["ids"]) in scored for r in trained]
    same_types = [tuple(r["ids"]) in scored and scored[tuple(r["ids"])]["types"] == r["types"] for r in trained]
    seg1 = [sum(r["types"]) if r["types"] else 0 for r in trained]
    out.update({"training rows": len(trained), "scored rows": len(served.rows),
                "training rows whose attended ids equal a scored row's": int(sum(same_ids)),
                "... and whose segment ids are equal too": int(sum(same_types)),
                "training rows with segment-1 tokens (the item)": int(sum(s > 0 for s in seg1)),
                "attention masks are one prefix per row (training, scoring)":
                    [all(r["mask_is_prefix"] for r in trained), all(r["mask_is_prefix"] for r in served.rows)],
                "training batch width vs longest row": [trained[0]["width"], max(len(r["ids"]) for r in trained)],
                "max |in-memory score - reloaded scorer's score|":
                    float(np.max(np.abs(np.array([in_memory[k] for k in keys]) - loaded))),
                "example": tok.decode(trained[0]["ids"]), "example segment ids": trained[0]["types"]})
    print(json.dumps({k: v for k, v in out.items() if k != "example segment ids"}, indent=1))
    return out


# ----------------------------------------------------------------------------- curve
def curve(args) -> dict:
    import torch
    from transformers import TrainerCallback

    from bench.config import ScorerSpec
    from bench.rerank.scorers import SCORER_KINDS, load_tokenizer
    from bench.train.methods import build_trainer

    p = pipeline(args.config)
    ds = p.dataset(DATASET)
    col, bm = ds.collection, p.first_stage(DATASET).run
    qids = ds.qids("test")
    top30 = {q: [d for d, _ in bm.ranked(q, p.exp.rerank.depth)] for q in qids}
    pairs = test_pairs(p, qids)
    bm_all = bm25_scores(col, qids, p.exp.retrieve)
    need = {q: list(dict.fromkeys(top30[q] + list(col.qrels[q]))) for q in qids}
    cfg = cell_config(p, args.negatives, args.depth)
    cfg["hyper"] = {**cfg["hyper"], "max_steps": args.steps}
    n_unjudged = sum(not x["rejected_judged"] for x in cfg["data"]["train_pairs"])
    points = []

    def evaluate(model, step):
        spec = ScorerSpec(name=CE, kind="cross-encoder", model=cfg["model_dir"], max_length=cfg["hyper"]["max_length"],
                          batch_size=cfg["score_batch_size"], dtype="float32")
        kind = SCORER_KINDS["cross-encoder"]
        was = model.training
        scorer = kind(spec, model=model, tokenizer=load_tokenizer(cfg["model_dir"], spec.max_length, kind.padding_side))
        rows = [(q, d) for q in need for d in need[q]]
        s = scorer.score([col.queries[q] for q, _ in rows], [col.corpus[d].full_text() for _, d in rows])
        model.train(was)
        scores: dict = {}
        for (q, d), v in zip(rows, s):
            scores.setdefault(q, {})[d] = float(v)
        res, run30 = evaluate_scores(CE, scores, col, bm_all, top30, qids, pairs)
        point = {"step": step, **{k: res[k] for k in ("nDCG@10 full (depth 30)", "nDCG@10 condensed (depth 30)",
                                                       "pairwise accuracy, test judged pairs",
                                                       "spearman with BM25 over top 30")},
                 "share of top 10": res["share of top 10"],
                 "share of candidate pairs in the top 30 ordered":
                     res["share of candidate pairs in the top 30 ordered"],
                 "seconds": round(time.time() - t0, 1)}
        points.append({**point, "per-claim nDCG@10 full (depth 30)":  # for paired comparisons
                       dict(zip(qids, np.round(ndcg10(run30, col.qrels, qids), 6).tolist()))})
        print(json.dumps(point), flush=True)

    class Every(TrainerCallback):
        def on_step_end(self, a, state, control, model=None, **kw):
            if state.global_step % args.every == 0:
                evaluate(model, state.global_step)

    t0 = time.time()
    torch.manual_seed(cfg["seed"])  # as `train_cell` seeds before the new head is initialised
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer(cfg, tmp + "/hf", Every(), 1, {})
        trainer.args.save_strategy = "no"
        evaluate(trainer.model, 0)
        trainer.train()
    return {"negatives": args.negatives, "train depth": args.depth or p.exp.train.depth,
            "train pairs": len(cfg["data"]["train_pairs"]), "train pairs with an unjudged rejected item": n_unjudged,
            "hyper": {k: cfg["hyper"][k] for k in ("lr", "batch_size", "max_steps", "max_length", "full_finetune")},
            "seed": cfg["seed"], "points": points, "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["analyse", "parity", "curve"])
    ap.add_argument("--config", default="configs/climate-fever-diagnosis.yaml")
    ap.add_argument("--out", default=None, help="JSON file (default results/<experiment>/diagnosis-<command>.json)")
    ap.add_argument("--negatives", default="none", choices=["none", "first-stage"])
    ap.add_argument("--depth", type=int, default=None, help="train.depth for --negatives first-stage")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    args = ap.parse_args(argv)
    result = {"analyse": analyse, "parity": parity, "curve": curve}[args.command](args)
    tag = args.command if args.command != "curve" else f"curve-{args.negatives}-{args.steps}"
    out = Path(args.out or Path("results") / pipeline(args.config).exp.name / f"diagnosis-{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
