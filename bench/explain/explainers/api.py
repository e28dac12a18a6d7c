"""`explain_pair`: several explainers on one loaded scorer for one item, with their metrics.

The data plane calls it once per item; it returns JSON-able results (schema in the README,
"Explainer benchmark"). Each explainer gets its own `WordGame`, so its `evaluations` are the model
rows it spent; the metrics then score their removal sets through one shared, cached game, whose
rows are reported apart (`metric_evaluations`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Sequence

import numpy as np

from bench.evaluate import faithfulness as fm
from bench.explain.explainers.base import Unsupported
from bench.explain.explainers.pair import ITEM, ExplainedPair, WordGame, explained_pair
from bench.explain.explainers.registry import get_explainer
from bench.explain.settings import ExplainerSpec, PairSettings

log = logging.getLogger("bench")


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def run_explainer(scorer, pair: ExplainedPair, spec: ExplainerSpec, settings: PairSettings, seed: int,
                  record: bool = False) -> tuple[dict, WordGame]:
    """One explainer on one pair: its result dict and the game it queried. Never raises on an item."""
    explainer = get_explainer(spec.name)
    params = explainer.params(spec.params)
    game = WordGame(scorer, pair, settings.removal, settings.mask_token, record=record)
    started = time.perf_counter()
    status, message, values, extras, backward, forward = "ok", "", None, {}, 0, None
    try:
        attribution = explainer.explain(scorer, pair, game, params, settings, seed)
        values, extras = attribution.values, attribution.extras
        backward, forward = attribution.backward_rows, attribution.forward_rows
        if len(values) != pair.n_words:
            raise RuntimeError(f"{spec.name} returned {len(values)} values for {pair.n_words} words")
    except Unsupported as e:
        status, message = "unsupported", str(e)
    except Exception as e:  # noqa: BLE001 - a failed item is marked, the run goes on
        log.warning("explainer %s failed on an item: %s: %s", spec.name, type(e).__name__, e)
        status, message = "error", f"{type(e).__name__}: {e}"
    result = {"explainer": spec.name, "status": status, "message": message,
              "values": _floats(values) if values is not None else [],
              "evaluations": int(forward if forward is not None else game.rows), "backward_evaluations": int(backward),
              "seconds": round(time.perf_counter() - started, 4), "params": asdict(params),
              "library": explainer.library, "seed": seed, "extras": extras}
    return result, game


def _labels(specs: Sequence[ExplainerSpec]) -> list[str]:
    labels = [s.key for s in specs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ValueError(f"explainer(s) {repeated} listed twice in one comparison; give each a distinct label")
    return labels


def json_safe(value):
    """NaN / inf -> None, numpy scalars -> Python numbers, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def explain_pair(scorer, query: str, item: str, specs: Sequence, settings: PairSettings = PairSettings(),
                 seed: int = 0, *, qid: str | None = None) -> dict:
    """Run every explainer of `specs` (names, dicts or `ExplainerSpec`) on the pair as `scorer`
    ranks it; then, if `settings.metrics`, their faithfulness metrics and, if
    `settings.repeat_seed_offset` is set, a second seed of the stochastic ones (stability)."""
    started = time.perf_counter()
    specs = [ExplainerSpec.of(s) for s in specs]
    labels = _labels(specs)
    for s in specs:  # a bad name or parameter is a configuration error, not an item's failure
        get_explainer(s.name).params(s.params)
    pair = explained_pair(scorer, query, item)
    out = {"qid": qid, "query": pair.query, "item": pair.item, "words": pair.words, "sides": pair.sides,
           "input": {"query_cut": pair.query_cut, "item_cut": pair.item_cut, "explained": "as ranked"},
           "settings": asdict(settings), "seed": seed}
    if pair.n_words == 0:
        return json_safe({**out, "status": "empty", "message": "the pair has no words to attribute",
                          "explainers": {}, "seconds": round(time.perf_counter() - started, 4)})
    results = {label: run_explainer(scorer, pair, spec, settings, seed)[0] for label, spec in zip(labels, specs)}
    if settings.repeat_seed_offset is not None:
        add_stability(scorer, pair, specs, labels, results, settings, seed)
    metric_game = WordGame(scorer, pair, settings.removal, settings.mask_token, cache=True)
    full_score = float(metric_game(np.ones((1, pair.n_words)))[0])
    if settings.metrics:
        add_metrics(pair, results, metric_game, settings)
    return json_safe({**out, "status": "ok", "message": "", "full_score": full_score, "explainers": results,
                      "metric_evaluations": metric_game.rows, "seconds": round(time.perf_counter() - started, 4)})


def add_stability(scorer, pair, specs, labels, results, settings, seed) -> None:
    """Kendall tau between two seeds of each stochastic explainer; deterministic ones are 1 by
    construction (recorded as such, not re-run)."""
    for label, spec in zip(labels, specs):
        r = results[label]
        if r["status"] != "ok":
            continue
        if not get_explainer(spec.name).stochastic:
            r["stability"] = {"tau": 1.0, "from": "deterministic"}
            continue
        again, _ = run_explainer(scorer, pair, spec, settings, seed + settings.repeat_seed_offset)
        tau = fm.kendall_tau(r["values"], again["values"]) if again["status"] == "ok" else float("nan")
        r["stability"] = {"tau": tau, "from": f"seeds {seed} and {seed + settings.repeat_seed_offset}",
                          "values_repeat": again["values"], "evaluations": again["evaluations"]}


# ------------------------------------------------------------------------------ metrics
def erasure_indices(pair: ExplainedPair, settings: PairSettings) -> np.ndarray:
    """The words ERASER / ferret / NAOPC may remove: the item's (the query is always kept) or all."""
    if settings.erasure_words == "all":
        return np.arange(pair.n_words)
    return np.array([i for i, side in enumerate(pair.sides) if side == ITEM], dtype=np.int64)


def _presence(n_words: int, eligible: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Presence rows from removal masks over the eligible words (others always present)."""
    removed = np.atleast_2d(removed)
    rows = np.ones((len(removed), n_words), dtype=np.int8)
    rows[:, eligible] = 1 - removed
    return rows


def add_metrics(pair: ExplainedPair, results: dict, game: WordGame, settings: PairSettings) -> None:
    """Per explainer with values: AOPC (ERASER or ferret bins), tau with leave-one-out, NAOPC."""
    ok = {label: np.asarray(r["values"]) for label, r in results.items() if r["status"] == "ok"}
    if not ok:
        return
    n = pair.n_words
    full = float(game(np.ones((1, n)))[0])
    loo_rows = 1 - np.eye(n, dtype=np.int8)
    loo_drops = full - game(loo_rows)  # s(x) - s(x without word i)
    eligible = erasure_indices(pair, settings)
    p_full = float(fm.sigmoid(full))

    def drop(removed: np.ndarray) -> np.ndarray:  # p(x) - p(x without the removed eligible words)
        return p_full - fm.sigmoid(game(_presence(n, eligible, removed)))

    for label, values in ok.items():
        metrics = {"erasure_words": settings.erasure_words, "n_erasure_words": int(len(eligible)),
                   "tau_loo": fm.tau_loo(values, loo_drops),
                   "aopc": aopc_metrics(values[eligible], n, eligible, game, full, settings)}
        results[label]["metrics"] = metrics
    if settings.naopc:
        add_naopc(ok, eligible, drop, results, settings)


def aopc_metrics(values: np.ndarray, n: int, eligible: np.ndarray, game: WordGame, full: float,
                 settings: PairSettings) -> dict:
    bins = fm.make_bins(values, settings.aopc_bins)
    without, only = [], []
    for rationale in bins.rationales:
        removed = np.zeros(len(eligible), dtype=np.int8)
        removed[list(rationale)] = 1
        without.append(_presence(n, eligible, removed)[0])
        only.append(_presence(n, eligible, 1 - removed)[0])
    if not bins.rationales:
        return {"scheme": bins.scheme, "fractions": [], "k": [], "comprehensiveness": [], "sufficiency": [],
                "aopc_comprehensiveness": float("nan"), "aopc_sufficiency": float("nan")}
    scores = game(np.array(without + only))
    comp = fm.comprehensiveness(full, scores[: len(without)])
    suff = fm.sufficiency(full, scores[len(without):])
    return {"scheme": bins.scheme, "fractions": list(bins.fractions), "k": list(bins.sizes),
            "comprehensiveness": _floats(comp), "sufficiency": _floats(suff),
            "aopc_comprehensiveness": fm.aopc(comp), "aopc_sufficiency": fm.aopc(suff)}


def add_naopc(ok: dict, eligible: np.ndarray, drop, results: dict, settings: PairSettings) -> None:
    n = len(eligible)
    if n == 0 or n > settings.naopc_max_words:
        for label in ok:
            results[label]["metrics"]["naopc"] = {"status": "skipped", "message":
                                                  f"{n} erasure words (NAOPC runs for 1..{settings.naopc_max_words})"}
        return
    curves = {}
    for label, values in ok.items():
        order = list(np.argsort(-values[eligible], kind="stable"))
        curves[label] = (fm.order_aopc(order, drop), fm.order_aopc(order[::-1], drop))
    if n <= settings.naopc_exact_max_words:
        lower, upper = fm.exact_aopc_bounds(n, drop)
        method = "exact"
    else:
        lower, upper = fm.beam_aopc_bounds(n, drop, settings.naopc_beam_size)
        # every scored order is a real order: the bounds cover it (keeps 0 <= NAOPC <= 1)
        seen = [v for pair in curves.values() for v in pair]
        lower, upper = min([lower, *seen]), max([upper, *seen])
        method = f"beam({settings.naopc_beam_size}), widened by the scored orders"
    for label, (comp, suff) in curves.items():
        results[label]["metrics"]["naopc"] = {
            "status": "ok", "bounds": method, "lower": lower, "upper": upper,
            "aopc_comprehensiveness": comp, "aopc_sufficiency": suff,
            "naopc_comprehensiveness": fm.normalised_aopc(comp, lower, upper),
            "naopc_sufficiency": fm.normalised_aopc(suff, lower, upper)}
