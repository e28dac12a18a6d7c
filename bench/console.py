"""The console reads like a report; everything libraries say goes to a log file.

- Console: the `bench` logger only (stage start/finish with timings, one line per training-cell
  state change, warnings), progress bars for long loops, then the leaderboard and the output
  folder. `-q` shows warnings only, `-v` shows every library's log records too.
- `results/<experiment>/logs/<command>-<time>.log`: everything, at debug level: the `bench`
  lines, every library logger (transformers, trl, ray, datasets, ...), Python warnings, and the
  stdout/stderr of every Ray worker (forwarded by Ray to the driver and written here instead of
  the terminal).
- Training workers announce cell state changes with one `RB-EVENT <json>` line on stdout; the
  driver turns those into console lines (`events`), so a cell's progress reaches the console on
  a cluster too.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("bench")

EVENT_PREFIX = "RB-EVENT "
# Library progress bars and chatter off in this process and in every Ray worker (bench.cluster).
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false",
             # Ray Train V2 sends every print() of a worker through the root logger, which also
             # printed the bytecode that dill's `nestedglobals` disassembles into a StringIO.
             "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_DEDUP_LOGS": "0"}

_state = {"verbosity": 0, "log_file": None, "console": None, "file": None, "stderr": None,
          "library_stream": None}
_event_handlers: list[Callable[[dict], None]] = []


def progress_enabled() -> bool:
    return _state["verbosity"] >= 0 and sys.stderr.isatty() or _state["verbosity"] > 0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (it changes when the log file opens)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _ConsoleFormatter(logging.Formatter):
    def format(self, record):
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


def setup(verbosity: int = 0) -> None:
    """Console logging before anything else happens (no log file yet)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    _state["verbosity"] = verbosity
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for lg in (root, log):  # a second call (tests run the CLI in-process) replaces the first
        for h in list(lg.handlers):
            lg.removeHandler(h)
    console = _StderrHandler()
    console.setFormatter(_ConsoleFormatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    console.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1 else logging.INFO)
    if verbosity > 0:
        root.addHandler(console)  # -v: every library's records on the console too
    else:
        log.addHandler(console)
        # Records of other loggers reach the root handler (the log file) only.
        root.addHandler(logging.NullHandler())
    log.setLevel(logging.DEBUG)
    logging.getLogger("ray-workers").setLevel(logging.DEBUG)
    _state["console"] = console
    logging.captureWarnings(True)
    for noisy in ("httpx", "filelock", "urllib3", "bm25s", "matplotlib", "PIL", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_libraries() -> None:
    """Route the libraries' own handlers (transformers, datasets, ray) into the root logger."""
    for name in ("transformers", "datasets", "ray", "ray.data", "ray.train", "ray.tune", "ray.serve",
                 "sentence_transformers", "deepspeed", "accelerate", "torch"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
    with contextlib.suppress(Exception):
        import transformers

        transformers.utils.logging.disable_default_handler()
        transformers.utils.logging.enable_propagation()
        transformers.utils.logging.disable_progress_bar()
    with contextlib.suppress(Exception):
        import datasets

        datasets.utils.logging.disable_progress_bar()
        datasets.utils.logging.enable_propagation()
        datasets.utils.logging.disable_default_handler()


def open_log_file(out_dir: Path, command: str) -> Path:
    """Start writing everything to results/<experiment>/logs/<command>-<time>.log."""
    if _state["file"] is not None:
        return _state["log_file"]
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8", delay=False)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _state.update(file=handler, log_file=path)
    _native_stderr_to(path)
    quiet_libraries()
    return path


def _native_stderr_to(path: Path) -> None:
    """Send what native code writes to file descriptor 2 (Ray's core worker, gloo, torch's C++
    warnings) into the log file; Python's sys.stderr keeps the terminal for our console lines."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a real file (e.g. captured by a test)
        return
    if fd != 2:
        return
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                         errors="backslashreplace")
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(target, 2)
    os.close(target)
    _state["stderr"] = (sys.stderr, saved)
    sys.stderr = terminal


def log_file() -> Path | None:
    return _state["log_file"]


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """Python-level output of library code run in the driver - a progress bar the library draws
    itself (transformers' GGUF conversion), a logger that prints to stdout when it is created
    (DeepSpeed's) - into the log file, where native output already goes. A no-op without a log file."""
    if _state["stderr"] is None:
        yield
        return
    if _state["library_stream"] is None:  # kept open: a handler created inside may hold it for good
        _state["library_stream"] = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(_state["library_stream"]), contextlib.redirect_stderr(_state["library_stream"]):
        yield


def close_log_file() -> None:
    if _state["library_stream"] is not None:  # flushed, not closed: a library's handler may still hold it
        _state["library_stream"].flush()
        _state["library_stream"] = None  # the next run's library output goes to the next run's log
    if _state["stderr"] is not None:  # give file descriptor 2 and sys.stderr back
        previous, saved = _state["stderr"]
        os.dup2(saved, 2)
        os.close(saved)
        terminal, sys.stderr = sys.stderr, previous
        terminal.close()
        _state["stderr"] = None
    handler = _state["file"]
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
        _state.update(file=None, log_file=None)


# ------------------------------------------------------------------ Ray worker output
def on_event(handler: Callable[[dict], None]) -> None:
    _event_handlers.append(handler)


def emit_event(**event) -> None:
    """From a worker: one state change, as a line the driver recognises."""
    print(EVENT_PREFIX + json.dumps(event, default=str), flush=True)


def _worker_output(data: dict) -> None:
    """Ray's log monitor delivers workers' stdout/stderr here (instead of printing it)."""
    where = data.get("actor_name") or data.get("task_name") or f"pid={data.get('pid')}"
    worker_log = logging.getLogger("ray-workers")
    for line in data.get("lines", []):
        if line.startswith(EVENT_PREFIX):
            try:
                event = json.loads(line[len(EVENT_PREFIX):])
            except ValueError:
                continue
            for handler in list(_event_handlers):
                handler(event)
            continue
        worker_log.debug("(%s) %s", where, line)


def capture_ray_worker_output() -> None:
    """Send Ray worker output to the log file; keep RB-EVENT lines for the console."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray version: its own printing stays
        return
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler("rerank_bench")
    dispatcher.add_handler("rerank_bench", _worker_output)
    quiet_libraries()


# ------------------------------------------------------------------ stage lines
_CACHE_COUNTS: list[Callable[[str], tuple[int, int]]] = []


def count_artifacts_with(counter: Callable[[str], tuple[int, int]]) -> None:
    """`counter(stage) -> (computed, cached)` artifacts so far; stage lines report the difference."""
    _CACHE_COUNTS[:] = [counter]


@contextlib.contextmanager
def stage(name: str, what: str = "", announce: bool = True) -> Iterator[dict]:
    """One line when a stage starts and one when it ends, with its time, what it did and what was cached.

    `announce=False` prints only the end line: stages that validate input (loading data) stay
    silent until they succeed, so bad input is reported by its one error line alone.
    """
    from bench.errors import InputError

    info: dict = {}
    started = time.time()
    counts = _CACHE_COUNTS[0](name.split()[0]) if _CACHE_COUNTS else None
    if announce:
        log.info("%s%s ...", name, f" {what}" if what else "")
    try:
        yield info
    except InputError:
        raise  # its own one-line message says what went wrong
    except BaseException:
        log.info("%s stopped after %.1fs", name, time.time() - started)
        raise
    notes = [info["note"]] if info.get("note") else []
    if counts is not None:
        computed, cached = (b - a for a, b in zip(counts, _CACHE_COUNTS[0](name.split()[0])))
        if computed or cached:
            notes.append(f"{computed} computed, {cached} cached")
    log.info("%s done in %.1fs%s", name, time.time() - started, f" ({'; '.join(notes)})" if notes else "")
