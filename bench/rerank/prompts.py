"""The relevance prompt shared by zero-shot scoring, SFT/DPO/PPO training and SHAP.

One place defines how a (query, item) pair is shown to a model, so a scorer always reads the
format its checkpoint was trained on.
"""
from __future__ import annotations

RELEVANCE_INSTRUCTION = "Is the document relevant to the query? Answer yes or no."
POSITIVE, NEGATIVE = "yes", "no"


def truncate_item(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def user_message(query: str, text: str) -> str:
    return f"Query: {query}\nDocument: {text}\n{RELEVANCE_INSTRUCTION}"


def relevance_prompt(tokenizer, query: str, text: str, style: str = "plain") -> str:
    """Prompt whose next token is the relevance answer."""
    if style == "chat" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user_message(query, text)}],
                                             add_generation_prompt=True, tokenize=False)
    return user_message(query, text) + "\nAnswer:"


def answer_text(relevant: bool, style: str = "plain") -> str:
    word = POSITIVE if relevant else NEGATIVE
    return word if style == "chat" else " " + word


def answer_token_ids(tokenizer, style: str = "plain") -> tuple[int, int]:
    """First token of the positive and negative answers: the two rows of the scoring neuron."""
    pos = tokenizer(answer_text(True, style), add_special_tokens=False)["input_ids"][0]
    neg = tokenizer(answer_text(False, style), add_special_tokens=False)["input_ids"][0]
    if pos == neg:
        raise ValueError("tokenizer maps 'yes' and 'no' to the same first token")
    return pos, neg
