"""`rerank-bench serve` (the HTTP API) and `rerank-bench submit` (an experiment as a Ray Job)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import command


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: serve.port of the config, 8000)")
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.epilog = ("Serves POST /rerank, GET /healthz and the OpenAPI docs at /docs until Ctrl-C. The scorer is "
                "serve.system (a rerank.systems name), serve.scorer (an explicit spec, e.g. a trained adapter) "
                "or the first rerank system. A config without a `serve:` section uses the defaults.")


@command("serve", "serve the re-rank-and-explain HTTP API (Ray Serve) in the foreground until Ctrl-C",
         add_args=_serve_args)
def cmd_serve(args) -> int:
    import logging
    import signal
    import time

    from pydantic import ValidationError

    from bench.config import format_validation_error, load_experiment
    from bench.errors import InputError
    from bench.serve.app import read_token, resolve_spec
    from bench.serve.config import ServeConfig

    log = logging.getLogger("bench")
    exp = load_experiment(args.config, args.set)
    cfg = exp.serve or ServeConfig()
    updates = {k: v for k, v in (("port", args.port), ("host", args.host)) if v is not None}
    if updates:
        try:
            cfg = ServeConfig.model_validate({**cfg.model_dump(), **updates})
        except ValidationError as e:
            raise InputError(format_validation_error(e, "--port/--host").replace("--port/--host: ", "--", 1)) from None
    spec = resolve_spec(exp, cfg)  # every input checked before Ray starts
    token = read_token(cfg)

    from ray import serve

    from bench.cluster import ensure_ray
    from bench.serve.app import build_app

    ray = ensure_ray(exp.ray)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(spec, cfg, token, exp), name="rerank-bench", route_prefix=cfg.route_prefix)
    base = f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"
    log.info("serve: %s ready at %s/rerank (docs %s/docs, health %s/healthz)%s; Ctrl-C stops", spec.name, base,
             base, base, ", bearer token required" if token else "")
    print(f"READY {base}", flush=True)

    def _stop(signum, frame):  # SIGTERM (e.g. a process manager) stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        log.info("serve: stopping")
    finally:
        serve.delete("rerank-bench")
        serve.shutdown()
        ray.shutdown()
    return 0


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", required=True, metavar="URL",
                   help="the cluster's job-submission (dashboard) address, e.g. http://HEAD:8265")
    p.add_argument("--fetch", type=Path, default=None, metavar="DIR",
                   help="after success, copy results/<experiment> from the cluster into DIR/<experiment>")
    p.add_argument("--python", default=None,
                   help="python that runs the job on the cluster (default: this venv's python if that path "
                        "exists on the head node, else 'python' from its PATH, as clusters/* install it)")
    p.add_argument("--remote-results", default="/tmp/rerank-bench-results", metavar="DIR",
                   help="results_dir on the head node (absolute; a shared/NFS path works too)")
    p.add_argument("--working-dir", type=Path, default=None,
                   help="project directory uploaded as the job's working dir (default: this checkout)")
    p.add_argument("--fetch-weights", action="store_true",
                   help="also fetch model weights (*.safetensors, *.bin, *.pt); off by default: those belong "
                        "in train.storage_path (s3:// or gs://)")
    p.add_argument("--no-wait", action="store_true", help="submit and print the job id; do not stream logs or fetch")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="where --fetch joins the cluster to bring the results back through its object store: "
                        "ray://HEAD:PORT (Ray Client) or HEAD:GCS_PORT; default ray://<host of --address>:10001")
    p.epilog = ("The config is validated here first; it (and every data path it names) must be inside the "
                "working dir or present on the cluster. Logs stream until the job ends; Ctrl-C stops "
                "following but leaves the job running.")


@command("submit", "run an experiment on a Ray cluster as a Ray Job: package, stream logs, fetch results",
         add_args=_submit_args)
def cmd_submit(args) -> int:
    from bench.serve.submit import SubmitOptions, submit_experiment

    opts = SubmitOptions(config=Path(args.config), overrides=list(args.set), address=args.address,
                         fetch=args.fetch, python=args.python, remote_results=args.remote_results,
                         working_dir=args.working_dir, fetch_weights=args.fetch_weights, wait=not args.no_wait,
                         ray_address=args.ray_address)
    return submit_experiment(opts)
