"""Config slice of the reason stage (pydantic only, light to import)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from bench.config_base import StrictModel

# USD per 1M tokens (input, output), list prices when written; override in config.
DEFAULT_PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60), "gpt-4.1": (2.00, 8.00)}


class LLMEndpoint(StrictModel):
    """Which LLM answers, and how it is reached: shared by the reason stage, listwise re-rankers and the
    R2R teacher, which all go through `bench.reason.backends` (cache, retries, cost)."""

    backend: Literal["local", "openai", "vllm"] = Field(
        "local", description="local: transformers generation in-process; openai: any OpenAI-compatible endpoint "
                             "(GPT-4o, `vllm serve`, Ray Serve LLM, `python -m bench.reason.openai_app`); "
                             "vllm: in-process vLLM engines in Ray actors (GPU nodes, extra 'vllm')")
    model: str = Field("smollm2-135m-instruct",
                       description="local/vllm: preset, HF id or dir; openai: the served model name, e.g. gpt-4o")
    base_url: Optional[str] = Field(None, description="openai: endpoint, e.g. http://127.0.0.1:8000/v1; "
                                                      "default OPENAI_BASE_URL or api.openai.com")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: name of the env var holding the key (never logged)")
    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature (every backend); 0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: sample from the smallest set of tokens whose "
                                                      "probability reaches top_p (every backend; needs temperature "
                                                      "> 0); 1 = off")
    num_beams: int = Field(1, ge=1, le=16, description="beam search width: local (transformers) backend only, with "
                                                       "temperature > 0 it is beam-search sampling; the OpenAI API "
                                                       "and the vllm backend have no beam search (> 1 there is an "
                                                       "input error); 1 = off")
    concurrency: int = Field(4, ge=1, description="openai: requests in flight at once")
    max_retries: int = Field(6, ge=0, description="openai: retries on 429 / 5xx / timeouts / connection errors")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-request timeout")
    batch_size: int = Field(8, ge=1, description="local: prompts generated together (left-padded)")

    # fields that change how an answer is obtained, not which answer: left out of artifact keys
    TRANSPORT: ClassVar[tuple[str, ...]] = ("base_url", "api_key_env", "concurrency", "max_retries", "timeout_s",
                                            "batch_size")

    @model_validator(mode="after")
    def _decoding(self):
        """Decoding settings a backend cannot honour are an input error, never silently ignored."""
        if self.num_beams > 1 and self.backend != "local":
            raise ValueError(f"num_beams: {self.num_beams} needs backend 'local' (transformers): "
                             f"{'the OpenAI API has' if self.backend == 'openai' else 'the vllm backend has'} no "
                             f"beam search; set num_beams: 1")
        if self.top_p < 1.0 and self.temperature == 0:
            raise ValueError(f"top_p: {self.top_p:g} needs sampling (temperature > 0); with temperature 0 "
                             f"decoding is greedy and top_p would be ignored")
        return self

    def decoding(self) -> dict:
        """The settings that decide which text is generated: in response-cache keys and provenance."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "num_beams": self.num_beams}

    def reason_config(self) -> "ReasonConfig":
        """The reason stage's backend config for this endpoint (what `build_backend` takes)."""
        return ReasonConfig(**self.model_dump(include=set(LLMEndpoint.model_fields)))


class ReasonConfig(LLMEndpoint):
    """An LLM writes why each explained item was selected, with and without its top-k attributions."""

    variants: list[Literal["with", "without"]] = Field(
        default_factory=lambda: ["with", "without"], description="prompts with and/or without attributions")
    backoff_s: float = Field(1.0, ge=0, description="openai: first retry wait (exponential, jittered, max 30 s)")
    actors: int = Field(1, ge=1, description="vllm: engine actors")
    gpus_per_actor: float = Field(1.0, ge=0, description="vllm: GPUs per engine actor")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES), description="model -> USD per 1M (input, output) tokens")
    cache_dir: Optional[Path] = Field(None, description="response cache; default results/<experiment>/llm_cache")
