"""rerank-bench: a Ray-distributed benchmarking harness for explainable LLM re-rankers."""

__version__ = "0.1.0"
