"""Config slice of the serving app (pydantic only, light to import).

```yaml
serve:
  system: smollm2-135m-zeroshot   # a name from rerank.systems (or give `scorer:` explicitly)
  port: 8000
  replicas: 1                     # or autoscaling: {min_replicas: 1, max_replicas: 4}
  max_batch_size: 16              # requests merged into one scorer call (@serve.batch)
  batch_wait_timeout_s: 0.01
  token_env: RERANK_BENCH_TOKEN   # optional: bearer token read from this env var
```
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from bench.config_base import StrictModel


class AutoscalingConfig(StrictModel):
    """Ray Serve autoscaling: replicas follow the number of requests in flight per replica."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0, description="requests in flight per replica to aim for")

    @model_validator(mode="after")
    def _order(self):
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})")
        return self


class ServeLimits(StrictModel):
    """Request limits; a request beyond them gets a 4xx answer naming the field."""

    max_candidates: int = Field(100, ge=1, description="candidates per request (413 beyond)")
    max_text_chars: int = Field(8000, ge=1, description="characters per candidate text (413 beyond)")
    max_query_chars: int = Field(1000, ge=1, description="characters of the query (413 beyond)")
    max_top_k: int = Field(100, ge=1, description="largest top_k accepted (422 beyond)")
    max_explain_candidates: int = Field(10, ge=1, description="items explained per request when explain=true")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="request body size (413 beyond)")


class ServeConfig(StrictModel):
    # Which scorer: a system of `rerank.systems` by name, or an explicit ScorerSpec mapping
    # (same keys as a rerank system; `adapter:` serves a trained cell).
    system: Optional[str] = Field(None, description="name of a system in rerank.systems (default: the first)")
    scorer: Optional[dict] = Field(None, description="explicit ScorerSpec (name, kind, model, adapter, ...)")
    host: str = Field("127.0.0.1", description="HTTP bind address (use 0.0.0.0 only behind auth/a firewall)")
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = Field("/", pattern=r"^/")
    replicas: int = Field(1, ge=1, description="fixed replica count (ignored when autoscaling is set)")
    autoscaling: Optional[AutoscalingConfig] = None
    cpus_per_replica: float = Field(1.0, gt=0)
    gpus_per_replica: float = Field(0.0, ge=0)
    max_ongoing_requests: int = Field(64, ge=1, description="requests a replica accepts at once")
    max_batch_size: int = Field(16, ge=1, description="requests merged into one scorer call; 1 = no batching")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="how long a batch waits to fill")
    limits: ServeLimits = ServeLimits()
    explain_top_k: int = Field(10, ge=1, description="attributed words returned per item (the paper's k=10)")
    explain_nsamples: int = Field(64, ge=8, description="KernelSHAP coalitions per explained item")
    token_env: Optional[str] = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="env var holding the bearer token; unset = no auth")

    @model_validator(mode="after")
    def _one_scorer(self):
        if self.system and self.scorer:
            raise ValueError("give either serve.system or serve.scorer, not both")
        return self
