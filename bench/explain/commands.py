"""`rerank-bench` subcommands of this stage (registered with `bench.cli.command`)."""
from __future__ import annotations
