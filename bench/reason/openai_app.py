"""A small OpenAI-compatible server (`/v1/chat/completions`, `/v1/models`) for a local model.

    python -m bench.reason.openai_app --model smollm2-135m-instruct --port 8000 \
        [--faults 429,500,timeout,malformed] [--slow-s 5]

It lets the reason stage's `openai` backend run offline, and lets tests exercise the real
`openai` client over real HTTP with injected faults: `--faults` is a plan applied to the first
requests in arrival order (request n gets the n-th fault; later requests are served normally):
`429` (rate limit), `500` (server error), `timeout` (sleeps --slow-s seconds, then answers 503
without generating: the client has given up by then), `malformed` (HTTP 200 with no choices), `reply:<text>` (HTTP 200 whose answer is exactly <text>,
without generating: a scripted malformed answer, e.g. `reply:[2] > [2] > [1]` or prose).
`POST /admin/faults {"plan": [...]}` sets a new plan for the requests that follow.
`GET /stats` reports how many requests arrived and how many generations each prompt got, so a
test can check that no explanation was generated twice, and which sampling settings (temperature,
top_p) the requests carried. Binds to 127.0.0.1 by default.
"""
# No `from __future__ import annotations`: FastAPI must see the real `Request` class in handler signatures.
import argparse
import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import Counter

log = logging.getLogger("bench")

FAULTS = ("429", "500", "timeout", "malformed")


def create_app(model: str, served_name: str | None = None, faults: list[str] | None = None, slow_s: float = 5.0,
               batch_wait_s: float = 0.05, max_batch: int = 8):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from bench.reason.backends import LocalGenerator

    for f in faults or []:
        if f not in FAULTS and not f.startswith("reply:"):
            raise ValueError(f"unknown fault {f!r}; expected one of {', '.join(FAULTS)} or reply:<text>")
    gen = LocalGenerator(model)
    name = served_name or model
    plan = list(faults or [])
    state = {"requests": 0, "faults": Counter(), "generations": Counter(), "sampling": Counter()}
    lock = threading.Lock()
    app = FastAPI(title="rerank-bench OpenAI-compatible server")
    queue: list = []  # (messages, max_tokens, temperature, top_p, future): requests that arrive together share a batch

    async def batcher():
        while True:
            await asyncio.sleep(batch_wait_s)
            if not queue:
                continue
            batch = [queue.pop(0) for _ in range(min(len(queue), max_batch))]
            groups: dict = {}
            for item in batch:  # one generate call per (max_tokens, temperature, top_p)
                groups.setdefault((item[1], item[2], item[3]), []).append(item)
            for (max_tokens, temperature, top_p), items in groups.items():
                try:
                    outs = await asyncio.to_thread(gen.generate, [i[0] for i in items], max_tokens, temperature,
                                                   top_p=top_p)
                    for i, o in zip(items, outs):
                        i[4].set_result(o)
                except Exception as e:  # noqa: BLE001 - reported to each waiting request as a 500
                    for i in items:
                        i[4].set_exception(e)

    @app.on_event("startup")
    async def start_batcher():
        app.state.batcher = asyncio.create_task(batcher())

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "rerank-bench"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/stats")
    async def stats():
        with lock:
            return {"requests": state["requests"], "faults": dict(state["faults"]),
                    "generations": dict(state["generations"]), "sampling": dict(state["sampling"]),
                    "max_generations_per_prompt": max(state["generations"].values(), default=0)}

    @app.post("/admin/faults")
    async def set_faults(request: Request):
        """Replace the fault plan; it applies to the requests that arrive from now on (tests)."""
        body = await request.json()
        new = [str(f) for f in body.get("plan", [])]
        bad = [f for f in new if f not in FAULTS and not f.startswith("reply:")]
        if bad:
            return JSONResponse({"error": {"message": f"unknown fault {bad[0]!r}"}}, status_code=400)
        with lock:
            plan[:] = [None] * state["requests"] + new
        return {"plan": new}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"message": "body must be JSON with 'messages'", "type": "invalid_request_error"}},
                                status_code=400)
        temperature = float(body.get("temperature") or 0.0)  # absent: greedy, as this server always did
        top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
        with lock:
            n = state["requests"]
            state["requests"] += 1
            state["sampling"][f"temperature={temperature:g} top_p={top_p:g}"] += 1
            fault = plan[n] if n < len(plan) else None
            if fault:
                state["faults"][fault.split(":")[0]] += 1
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limit (injected)", "type": "rate_limit_error"}},
                                status_code=429, headers={"retry-after": "0"})
        if fault == "500":
            return JSONResponse({"error": {"message": "server error (injected)", "type": "server_error"}}, status_code=500)
        if fault == "timeout":
            await asyncio.sleep(slow_s)
            return JSONResponse({"error": {"message": "too slow (injected)", "type": "server_error"}}, status_code=503)
        if body.get("model") not in (None, name):
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not served; try {name!r}",
                                           "type": "invalid_request_error"}}, status_code=404)
        created = int(time.time())
        if fault == "malformed":
            return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": created, "model": name, "choices": []}
        if fault and fault.startswith("reply:"):
            text = fault[len("reply:"):]
            return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": created, "model": name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()),
                              "total_tokens": 1 + len(text.split())}}
        fut = asyncio.get_running_loop().create_future()
        queue.append((messages, int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
                      temperature, top_p, fut))
        try:
            out = await fut
        except Exception as e:  # noqa: BLE001
            return JSONResponse({"error": {"message": f"generation failed: {e}", "type": "server_error"}}, status_code=500)
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        with lock:
            state["generations"][key] += 1
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out["text"]},
                             "finish_reason": out["finish_reason"]}],
                "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["completion_tokens"],
                          "total_tokens": out["prompt_tokens"] + out["completion_tokens"]}}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reason.openai_app", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="preset, HF id or local dir")
    parser.add_argument("--served-model-name", default=None, help="name clients ask for (default --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--faults", default="", help=f"comma-separated fault plan for the first requests: {', '.join(FAULTS)}")
    parser.add_argument("--slow-s", type=float, default=5.0, help="delay of a 'timeout' fault")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import uvicorn

    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    app = create_app(args.model, args.served_model_name, faults, args.slow_s)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
