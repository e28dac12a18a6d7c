"""`rerank-bench explain` and `rerank-bench reason` (registered with `bench.cli.command`)."""
from __future__ import annotations

from bench.cli import command, pipeline_from_args


def _no_args(sp) -> None:
    sp.epilog = "Configure with the experiment's 'explain:' (and 'reason:') sections; see README."


def _stage(args, with_reason: bool) -> int:
    from bench.errors import InputError

    p = pipeline_from_args(args)
    if p.exp.explain is None:
        raise InputError(f"{args.config}: explain: section missing; add one (e.g. 'explain: {{top_items: 1}}')")
    if with_reason and p.exp.reason is None:
        raise InputError(f"{args.config}: reason: section missing; add one (e.g. 'reason: {{backend: local}}')")
    for name, system in p.explain_all():  # every explained system on every data source it ranks
        if with_reason:
            artifact = p.reason(name, system)
            items, summary = artifact.items, artifact.summary
            print(f"{name}: {system}: {summary['ok']}/{summary['prompts']} explanations "
                  f"({summary['cached']} cached), {summary['prompt_tokens']}+{summary['completion_tokens']} tokens, "
                  f"cost {summary['cost_usd']} USD")
        else:
            items = p.explain(name, system).items
            ok = sum(it["status"] in ("ok", "k_clamped") for it in items)
            print(f"{name}: {system}: {ok}/{len(items)} items explained")
        for it in items:
            if it["status"] not in ("ok",):
                print(f"  {it['qid']}/{it['docid']}: {it['status']}: {it.get('message', '')}")
    cols = p.explanations(reason=with_reason)
    print(f"outputs: {p.out_dir / 'explanations'}, {p.out_dir / 'figures'}, {p.out_dir / 'table3.md'}, "
          f"{p.out_dir / 'explainers.md'}, {p.out_dir / 'explanations.json'}, {p.out_dir / 'summary.json'}")
    from bench.explain.summary import fmt_interval

    for col, cells in getattr(p, "explain_intervals", {}).items():  # mean [95 % CI over queries]
        print(f"  {col}: " + ", ".join(f"{s} {fmt_interval(c)}" for s, c in cells.items()))
    for col, values in cols.items():
        print(f"  {col}: " + ", ".join(f"{s} {v:.4f}" for s, v in values.items()))
    print(p.summary())
    return 0


@command("explain", "every configured explainer's word attributions of re-ranked items on the data plane (+ "
                    "faithfulness with intervals over queries)",
         add_args=_no_args)
def cmd_explain(args) -> int:
    return _stage(args, with_reason=False)


@command("reason", "LLM explanations of explained items, with and without attributions (+ grounding, agreement)",
         add_args=_no_args)
def cmd_reason(args) -> int:
    return _stage(args, with_reason=True)
