"""LLM backends of the reason stage: an OpenAI-compatible endpoint, in-process vLLM, local transformers.

Every backend turns a list of chat requests into exactly one `Reply` each, never raising for
one bad item: a failed request ends as status "error", an empty or unparseable answer as
"malformed", each with a one-line message. Successful replies are stored in an on-disk
`ResponseCache` keyed by (backend, model, messages, generation params), so a re-run (or a run
interrupted half-way) never pays for the same generation twice.
"""
from __future__ import annotations

import abc
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from bench.console import progress_enabled

from bench.artifacts import content_hash, write_json_atomic
from bench.errors import InputError
from bench.pools import interruptible_pool
from bench.reason.config import ReasonConfig

log = logging.getLogger("bench")


@dataclass
class Request:
    id: str
    messages: list[dict]


@dataclass
class Reply:
    text: str | None
    status: str = "ok"  # ok | error | malformed
    message: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ cache
class ResponseCache:
    """One JSON file per successful generation, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def key(self, backend: str, model: str, messages: list[dict], params: dict, endpoint: dict | None = None) -> str:
        return content_hash(backend, model, messages, params, endpoint, length=32)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Reply | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return Reply(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            return None  # a corrupt entry is simply regenerated

    def put(self, key: str, reply: Reply) -> None:
        write_json_atomic(self._path(key), asdict(reply))


# ------------------------------------------------------------------------------ backends
class Backend(abc.ABC):
    name: str

    def __init__(self, cfg: ReasonConfig):
        self.cfg = cfg

    def params(self) -> dict:
        """Generation settings in the response-cache key. top_p and num_beams join only when they differ from
        their defaults (1.0, 1), so responses cached before they existed keep their keys."""
        params = {"max_new_tokens": self.cfg.max_new_tokens, "temperature": self.cfg.temperature}
        top_p, beams = getattr(self.cfg, "top_p", 1.0), getattr(self.cfg, "num_beams", 1)
        if top_p != 1.0:
            params["top_p"] = top_p
        if beams != 1:
            params["num_beams"] = beams
        return params

    @abc.abstractmethod
    def generate(self, requests: list[Request], on_reply=None) -> list[Reply]:
        """Exactly one reply per request, in order; `on_reply(i, reply)` as each one arrives."""

    def close(self) -> None:
        pass


def endpoint_identity(cfg) -> dict:
    """Who answers, for cache and artifact keys: an OpenAI-compatible endpoint by its address (the same
    model name on two servers is two models), a local or vLLM model by its weights' fingerprint."""
    if cfg.backend == "openai":
        url = (cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        return {"backend": "openai", "base_url": url, "model": cfg.model}
    from bench.models import model_fingerprint

    return {"backend": cfg.backend, "model": model_fingerprint(cfg.model)}


def generate_cached(backend: Backend, requests: list[Request], cache: ResponseCache) -> list[Reply]:
    """Replies for every request: cached ones read, the rest generated once and cached if ok."""
    endpoint = endpoint_identity(backend.cfg)
    keys = [cache.key(backend.name, backend.cfg.model, r.messages, backend.params(), endpoint) for r in requests]
    replies: list[Reply | None] = [cache.get(k) for k in keys]
    for r in replies:
        if r is not None:
            r.cached = True
    todo = [i for i, r in enumerate(replies) if r is None]
    log.debug("reason: %d prompts, %d from the response cache, %d to generate with %s:%s",
             len(requests), len(requests) - len(todo), len(todo), backend.name, backend.cfg.model)
    if todo:
        def store(i: int, reply: Reply) -> None:
            replies[i] = reply
            if reply.status == "ok":
                cache.put(keys[i], reply)  # as soon as it arrives: an interrupted run keeps what it paid for

        fresh = backend.generate([requests[i] for i in todo], on_reply=lambda j, rep: store(todo[j], rep))
        for i, reply in zip(todo, fresh):
            store(i, reply)
    return replies  # type: ignore[return-value]


def _validated(text: str | None, finish_reason: str | None) -> tuple[str | None, str, str]:
    """(text, status, message): an answer with no visible text is malformed, not an explanation."""
    if text is None or not str(text).strip():
        return None, "malformed", f"model returned no text (finish_reason={finish_reason})"
    return str(text).strip(), "ok", ""


# ---- local transformers ------------------------------------------------------------------
class LocalGenerator:
    """Batched chat generation with a local transformers model (also used by openai_app): greedy (temperature 0),
    sampling (temperature > 0, nucleus `top_p`), beam search (`num_beams` > 1) or beam-search sampling (both);
    transformers' own `generate` decodes, given exactly these settings."""

    def __init__(self, model: str, max_length: int = 2048):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from bench.models import resolve_model

        self.torch = torch
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.model_max_length = max_length
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        cuda = torch.cuda.is_available()  # a GPU when there is one (bf16), else the CPU in float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if cuda else torch.float32
                                                          ).to("cuda" if cuda else "cpu").eval()
        self.max_length = max_length
        self.lock = threading.Lock()  # one generation at a time per model

    def prompt_text(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n"

    def generate(self, batch: list[list[dict]], max_new_tokens: int, temperature: float = 0.0,
                 seed: int = 0, top_p: float = 1.0, num_beams: int = 1) -> list[dict]:
        torch = self.torch
        from bench.rerank.prompts import encode

        room = self.max_length - max_new_tokens
        encoded = [encode(self.tokenizer, self.prompt_text(m)) for m in batch]  # BOS as every model input gets it
        enc = self.tokenizer.pad([{k: v[:room] for k, v in e.items()} for e in encoded], return_tensors="pt")
        kwargs = {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature}
        if num_beams > 1:  # the best beam per prompt (num_return_sequences 1), no length penalty beyond the default
            kwargs.update(num_beams=num_beams, early_stopping=True)
        enc = enc.to(self.model.device)
        with self.lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      top_p=top_p if temperature > 0 and top_p < 1.0 else None, top_k=None, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for row, mask in zip(new, enc["attention_mask"]):
            ids = row.tolist()
            eos = self.tokenizer.eos_token_id
            n = ids.index(eos) + 1 if eos in ids else len(ids)
            results.append({"text": self.tokenizer.decode(ids[:n], skip_special_tokens=True),
                            "prompt_tokens": int(mask.sum()), "completion_tokens": n,
                            "finish_reason": "stop" if n < len(ids) or (ids and ids[-1] == eos) else "length"})
        return results


class LocalBackend(Backend):
    """Offline: a local transformers model (e.g. SmolLM2-135M-Instruct), greedy by default; honours
    temperature, top_p and num_beams (beam search; beam-search sampling with temperature > 0)."""

    name = "local"

    def __init__(self, cfg: ReasonConfig):
        super().__init__(cfg)
        self.gen = LocalGenerator(cfg.model)

    def generate(self, requests: list[Request], on_reply=None) -> list[Reply]:
        replies: list[Reply] = []
        bs = self.cfg.batch_size
        with tqdm(total=len(requests), desc=f"reason local:{self.cfg.model}", unit="prompt", mininterval=2, disable=not progress_enabled(), leave=False) as bar:
            for start in range(0, len(requests), bs):
                chunk = requests[start:start + bs]
                t0 = time.perf_counter()
                try:
                    outs = self.gen.generate([r.messages for r in chunk], self.cfg.max_new_tokens, self.cfg.temperature,
                                             top_p=self.cfg.top_p, num_beams=self.cfg.num_beams)
                except Exception as e:  # e.g. out of memory: mark this chunk, keep the rest
                    log.error("reason local: generation failed for %d prompts: %s", len(chunk), e)
                    replies += [Reply(None, "error", f"{type(e).__name__}: {e}", attempts=1) for _ in chunk]
                    bar.update(len(chunk))
                    continue
                dt = (time.perf_counter() - t0) / len(chunk)
                for o in outs:
                    text, status, msg = _validated(o["text"], o["finish_reason"])
                    replies.append(Reply(text, status, msg, o["prompt_tokens"], o["completion_tokens"], attempts=1,
                                         seconds=round(dt, 3), finish_reason=o["finish_reason"]))
                    if on_reply:
                        on_reply(len(replies) - 1, replies[-1])
                bar.update(len(chunk))
        return replies


# ---- OpenAI-compatible endpoint --------------------------------------------------------------
class OpenAIBackend(Backend):
    """Any OpenAI-compatible endpoint through the `openai` client, with retries and a concurrency cap.

    Sends temperature and top_p with every request; the API has no beam search (num_beams > 1 is an
    input error before any request). Retries (tenacity, exponential backoff with jitter) cover 429, 5xx, timeouts and connection
    errors; the client's own retries are off so each attempt is counted. The API key is read
    from the environment variable named in config and never logged or written.
    """

    name = "openai"

    def __init__(self, cfg: ReasonConfig):
        super().__init__(cfg)
        import openai

        self.openai = openai
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if base_url is None:
                raise InputError(f"reason.api_key_env: environment variable {cfg.api_key_env} is not set; "
                                 f"the openai backend needs a key for api.openai.com (or set reason.base_url "
                                 f"to a local OpenAI-compatible server)")
            key = "unused-local-key"  # local servers accept any key
        self.base_url = base_url or "https://api.openai.com/v1"
        self.client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=cfg.timeout_s)

    def _retrying(self):
        import tenacity

        o = self.openai
        transient = (o.RateLimitError, o.InternalServerError, o.APITimeoutError, o.APIConnectionError)
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(transient),
            wait=tenacity.wait_random_exponential(multiplier=self.cfg.backoff_s, max=30),
            stop=tenacity.stop_after_attempt(self.cfg.max_retries + 1), reraise=True,
            before_sleep=lambda rs: log.warning("reason openai: attempt %d failed (%s); retrying",
                                                rs.attempt_number, _short(rs.outcome.exception())))

    def reachable(self) -> str | None:
        """None if the endpoint answers; else why not (checked once, before any generation)."""
        try:
            self.client.with_options(timeout=min(self.cfg.timeout_s, 15.0), max_retries=2).models.list()
            return None
        except self.openai.APIConnectionError as e:
            return f"endpoint {self.base_url} unreachable: {_short(e)}"
        except self.openai.APIStatusError as e:
            if e.status_code in (401, 403):
                return f"endpoint {self.base_url} refused the API key from {self.cfg.api_key_env} (HTTP {e.status_code})"
            return None  # some servers have no /models; the chat requests will tell

    def one(self, request: Request) -> Reply:
        t0 = time.perf_counter()
        attempts = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    resp = self.client.chat.completions.create(
                        model=self.cfg.model, messages=request.messages, max_tokens=self.cfg.max_new_tokens,
                        temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        except self.openai.APIStatusError as e:
            return Reply(None, "error", f"HTTP {e.status_code} after {attempts} attempt(s): {_short(e)}",
                         attempts=attempts, seconds=round(time.perf_counter() - t0, 3))
        except (self.openai.APIConnectionError, self.openai.APITimeoutError) as e:
            return Reply(None, "error", f"{type(e).__name__} after {attempts} attempt(s): {_short(e)}",
                         attempts=attempts, seconds=round(time.perf_counter() - t0, 3))
        except Exception as e:  # unparseable body and the like: the model's output is unusable
            return Reply(None, "malformed", f"unusable response: {type(e).__name__}: {_short(e)}",
                         attempts=attempts, seconds=round(time.perf_counter() - t0, 3))
        choices = getattr(resp, "choices", None) or []
        message = choices[0].message if choices else None
        finish = choices[0].finish_reason if choices else None
        text, status, msg = _validated(getattr(message, "content", None) if message else None, finish)
        if not choices:
            msg = "response has no choices"
        usage = getattr(resp, "usage", None)
        return Reply(text, status, msg, getattr(usage, "prompt_tokens", 0) or 0,
                     getattr(usage, "completion_tokens", 0) or 0, attempts=attempts,
                     seconds=round(time.perf_counter() - t0, 3), finish_reason=finish)

    def generate(self, requests: list[Request], on_reply=None) -> list[Reply]:
        why = self.reachable()
        if why:
            log.error("reason openai: %s; %d prompts marked as failed", why, len(requests))
            return [Reply(None, "error", why) for _ in requests]
        replies: list[Reply | None] = [None] * len(requests)
        # interruptible: a Ctrl-C stops sending the queued prompts (with a plain pool it sent them all)
        with interruptible_pool(self.cfg.concurrency, "reason") as pool, \
                tqdm(total=len(requests), desc=f"reason openai:{self.cfg.model}", unit="prompt", mininterval=2, disable=not progress_enabled(), leave=False) as bar:
            futures = {pool.submit(self.one, r): i for i, r in enumerate(requests)}
            from concurrent.futures import as_completed

            for fut in as_completed(futures):
                i = futures[fut]
                replies[i] = fut.result()
                if on_reply:
                    on_reply(i, replies[i])
                bar.update(1)
        return replies  # type: ignore[return-value]

    def close(self) -> None:
        self.client.close()


def _short(e: BaseException | None, n: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[:n] + "..."


# ---- in-process vLLM in Ray actors (GPU nodes) -------------------------------------------------
class VLLMBackend(Backend):
    """vLLM engines inside Ray actors (one per GPU by default). Needs the 'vllm' extra on GPU nodes.
    Honours temperature and top_p (vLLM's SamplingParams); no beam search (num_beams > 1 is an input error)."""

    name = "vllm"

    def __init__(self, cfg: ReasonConfig):
        super().__init__(cfg)
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise InputError('reason.backend: vllm is not installed; pip install "rerank-bench[vllm]" on GPU nodes '
                             '(or serve a model with `vllm serve` and use backend: openai with base_url)')

    def generate(self, requests: list[Request], on_reply=None) -> list[Reply]:
        import ray

        from bench.models import resolve_model

        model = resolve_model(self.cfg.model)
        actor_cls = _vllm_actor_cls()
        actors = [actor_cls.options(num_gpus=self.cfg.gpus_per_actor).remote(model) for _ in range(self.cfg.actors)]
        try:
            shards = [requests[i::len(actors)] for i in range(len(actors))]
            outs = ray.get([a.generate.remote([r.messages for r in s], self.cfg.max_new_tokens, self.cfg.temperature,
                                              self.cfg.top_p)
                            for a, s in zip(actors, shards)])
        finally:
            for a in actors:
                ray.kill(a)
        by_id: dict[str, Reply] = {}
        for shard, out in zip(shards, outs):
            for r, o in zip(shard, out):
                text, status, msg = _validated(o["text"], o["finish_reason"])
                by_id[r.id] = Reply(text, status, msg, o["prompt_tokens"], o["completion_tokens"], attempts=1,
                                    finish_reason=o["finish_reason"])
        return [by_id[r.id] for r in requests]


def _vllm_actor_cls():
    import ray

    @ray.remote
    class VLLMActor:
        def __init__(self, model: str):
            from vllm import LLM

            self.llm = LLM(model=model)

        def generate(self, batch, max_new_tokens, temperature, top_p=1.0):
            from vllm import SamplingParams

            outs = self.llm.chat(batch, SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p))
            return [{"text": o.outputs[0].text, "prompt_tokens": len(o.prompt_token_ids),
                     "completion_tokens": len(o.outputs[0].token_ids), "finish_reason": o.outputs[0].finish_reason}
                    for o in outs]

    return VLLMActor


BACKENDS = {"local": LocalBackend, "openai": OpenAIBackend, "vllm": VLLMBackend}


def build_backend(cfg: ReasonConfig) -> Backend:
    return BACKENDS[cfg.backend](cfg)


def cost_usd(cfg: ReasonConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Cost of the tokens actually generated in this run, from the config's price table (None if unpriced)."""
    price = cfg.prices.get(cfg.model)
    if price is None:  # self-hosted models cost compute time, not tokens; an unpriced API model is unknown
        return 0.0 if cfg.backend in ("local", "vllm") or cfg.base_url else None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, 6)
