"""The paper's explanation prompt (Fig. 3), with and without the top-k attributions.

With attributions: the user query, the top-k tokens of the response each with its attribution
value, and the response item (URL and summary text); the model writes a concise, clear,
coherent explanation of why the response was selected, focusing on how the most important
tokens contribute to its relevance and ranking. Without attributions: the same prompt minus
the token list and the sentence about it (the comparison of the paper's Tables 3-4).
"""
from __future__ import annotations

SYSTEM = "You explain the decisions of a search engine's re-ranking model to its users."


def explanation_prompt(query: str, url: str, text: str, topk: list[dict] | None) -> str:
    lines = ["Given the user query below"]
    if topk is not None:
        lines[0] += (f", the top {len(topk)} tokens of a response together with their attribution values "
                     f"(how much each token raised the response's ranking score)")
    lines[0] += ", and the response item (its URL and summary text), write a concise, clear and coherent " \
                "explanation of why this response was selected for the query."
    if topk is not None:
        lines.append("Focus on how the most important tokens contribute to the response's relevance and ranking.")
    lines += ["", f"User query: {query}"]
    if topk is not None:
        lines.append(f"Top {len(topk)} tokens (token: attribution value):")
        lines += [f"- {t['word']}: {t['value']:.4f}" for t in topk]
    lines += [f"Response URL: {url or '(none)'}", f"Response summary: {text}", "", "Explanation:"]
    return "\n".join(lines)


def messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
