"""Reason stage: natural-language explanations from an LLM, with and without attributions."""
