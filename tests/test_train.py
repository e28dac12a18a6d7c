"""The training grid on a real local Ray cluster with real trl trainers and tiny models.

Each test drives the real `rerank-bench` CLI in a subprocess (its own Ray cluster), so killing
processes only ever touches what the test itself started.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, ctrl_c_reaches_python, run_cli

TINY_HYPER = {"epochs": 1, "max_steps": 8, "batch_size": 4, "max_length": 192, "lr": 0.002, "lora_r": 4,
              "lora_alpha": 8, "logging_steps": 2, "save_steps": 2}


def grid_config(tmp_path: Path, methods, models=("tiny-qwen2",), name="grid", **train) -> dict:
    return {
        "name": name, "results_dir": str(tmp_path / "results"), "seed": 7,
        "data": [{"name": "envri-demo", "loader": "demo"}],
        "splits": {"scheme": "random", "train": 0.6, "valid": 0.2, "test": 0.2},
        "ray": {"num_cpus": 2},
        "rerank": {"depth": 10, "actors": 1},
        "evaluate": {"measures": ["nDCG@5", "nDCG@10"], "split": "test"},
        "train": {"models": [{"model": m} for m in models], "methods": list(methods), "hyper": dict(TINY_HYPER),
                  "max_concurrent_cells": 1, **train},
    }


def start_cli(*args, log: Path) -> subprocess.Popen:
    """The CLI in its own session, so that the test can stop it and its Ray cluster as one group."""
    f = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *map(str, args)], stdout=f, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True, preexec_fn=ctrl_c_reaches_python)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the CLI's process group (driver + the Ray cluster it started): a crash, not a shutdown."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:  # Ray's processes are in the group too; wait until they are gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def cell_dirs(results: Path, exp: str) -> dict[str, Path]:
    """Finished cells by name (a cell is finished once its done-marker exists)."""
    out = {}
    for marker in (results / exp / "train").glob("*/_DONE.json"):
        out[json.loads(marker.read_text())["cell"]] = marker.parent
    return out


def checkpoints(results: Path, exp: str, cell: str) -> list[str]:
    """Mid-cell checkpoints Ray Train has registered for a cell (a directory alone may still be uploading).

    The grid trains its cells in lanes (one Ray Train run each); a cell's checkpoints inside its
    lane's run are named step-<cell>-<key>-<step>."""
    out = []
    for snap in (results / exp / "train" / "ray").glob(f"{exp}-lane-*/checkpoint_manager_snapshot.json"):
        try:
            names = [c["checkpoint_dir_name"] for c in json.loads(snap.read_text())["checkpoint_results"]]
        except (ValueError, KeyError):  # being rewritten right now
            continue
        out += [n for n in names if n.startswith(f"step-{cell}-")]
    return out


def test_a_killed_worker_restarts_and_a_crashed_grid_resumes_skipping_finished_cells(tmp_path, write_config):
    """Two failures in one grid. (1) SIGKILL of the Ray Train worker mid-cell: Ray Train starts a new
    worker, which resumes the SFT cell from its checkpoint and finishes it. (2) SIGKILL of the whole
    run (driver and cluster) while RM trains: the re-run keeps the finished SFT cell, resumes RM from
    its checkpoint, and both trained cells get Table 1 entries and leaderboard rows."""
    tree = grid_config(tmp_path, ["sft", "rm"], name="resume", max_failures=2)
    tree["train"]["hyper"].update(max_steps=16, save_steps=4)  # the kills land mid-cell, after a checkpoint
    path = write_config(tree)
    results = tmp_path / "results"
    log1 = tmp_path / "run1.log"
    proc = start_cli("run", path, log=log1)
    try:
        wait_for(lambda: checkpoints(results, "resume", "tiny-qwen2-sft"), 600, "an SFT checkpoint", proc, log1)
        pid_file = next((results / "resume" / "train" / "running").glob("*/rank0.pid"))  # the lane's worker
        killed = int(pid_file.read_text())
        os.kill(killed, signal.SIGKILL)  # the Ray Train worker process, mid-cell
        wait_for(lambda: "tiny-qwen2-sft" in cell_dirs(results, "resume"), 600, "the SFT cell to finish", proc, log1)
        wait_for(lambda: checkpoints(results, "resume", "tiny-qwen2-rm"), 600, "an RM checkpoint", proc, log1)
    finally:
        kill_group(proc)
    assert "train tiny-qwen2-sft: state=resuming" in log1.read_text(), "the restarted worker did not resume SFT"
    assert int(pid_file.read_text()) != killed, "no new worker process was started"
    finished = cell_dirs(results, "resume")
    assert set(finished) == {"tiny-qwen2-sft"}, "only the SFT cell had finished when the run was killed"
    sft_mtime = (finished["tiny-qwen2-sft"] / "metrics.json").stat().st_mtime_ns

    rerun = run_cli("run", path, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    finished = cell_dirs(results, "resume")
    assert set(finished) == {"tiny-qwen2-sft", "tiny-qwen2-rm"}
    assert (finished["tiny-qwen2-sft"] / "metrics.json").stat().st_mtime_ns == sft_mtime, "SFT cell was retrained"
    assert "train tiny-qwen2-sft: state=cached" in rerun.stderr
    assert "train tiny-qwen2-rm: state=resuming" in rerun.stderr, "RM cell did not resume"

    for cell in finished.values():
        m = json.loads((cell / "metrics.json").read_text())
        assert m["steps"] == 16 and m["loss_curve"] and 0.0 <= m["pairwise_accuracy"] <= 1.0
        assert (cell / ("adapter" if (cell / "adapter").is_dir() else "model")).is_dir()
    table = (results / "resume" / "table1.md").read_text()
    assert "| sft " in table and "| rm " in table and "failed" not in table
    rows = {r["system"]: r for r in json.loads((results / "resume" / "leaderboard.json").read_text())["rows"]}
    assert list(rows)[0] == "BM25"
    for name, method in (("tiny-qwen2-sft", "sft"), ("tiny-qwen2-rm", "rm")):
        info = rows[name]["info"]
        assert (info["kind"], info["method"], info["family"], info["status"]) == ("trained", method, "qwen2", "ok")
        assert info["train_dataset"] == "envri-demo" and rows[name]["nDCG@10"] is not None


def test_deepspeed_zero2_on_cpu_trains_a_cell_and_its_loss_falls(tmp_path, write_config):
    tree = grid_config(tmp_path, ["sft"], name="ds", deepspeed=str(ROOT / "configs/deepspeed/zero2-cpu.json"),
                       backend="gloo")
    tree["train"]["hyper"].update(max_steps=12, lr=0.005, full_finetune=True)  # all weights sharded by ZeRO-2
    path = write_config(tree)
    out = run_cli("train", path, timeout=900, env={"DS_BUILD_OPS": "0", "DS_ACCELERATOR": "cpu"})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    cell = cell_dirs(tmp_path / "results", "ds")["tiny-qwen2-sft"]
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["deepspeed_zero_stage"] == 2, "the trainer did not run under a DeepSpeed ZeRO-2 engine"
    curve = metrics["loss_curve"]
    assert len(curve) >= 3
    assert curve[-1][1] < curve[0][1] * 0.8, f"loss did not fall: {curve}"


@pytest.mark.parametrize("change, expected", [
    ({"models": [{"model": "tiny-gpt"}]}, "unknown model 'tiny-gpt'; expected a preset (tiny-llama"),
    ({"methods": ["sft", "kto"]}, "train.methods.1: Input should be 'sft', 'rm', 'dpo', 'ppo', 'grpo', 'rloo', "),
    ({"models": [{"model": "/no/such/model"}]}, "model path '/no/such/model' is not a Hugging Face model directory"),
    ({"methods": ["sft", "ppo"]}, "method 'ppo' needs the reward model of its family: add 'rm' to train.methods"),
    ({"datasets": ["scifact"]}, "train.datasets: unknown data source 'scifact'; expected one of envri-demo"),
])
def test_bad_grid_input_is_one_line_and_exit_2_before_training(tmp_path, write_config, change, expected):
    tree = grid_config(tmp_path, ["sft"], name="bad")
    tree["train"].update(change)
    out = run_cli("train", write_config(tree), timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert not (tmp_path / "results" / "bad" / "train").exists(), "nothing may be trained or written"


def test_ctrl_c_during_the_grid_stops_its_workers_and_exits_130(tmp_path, write_config):
    """SIGINT (Ctrl-C) while a lane trains: the driver shuts its Ray cluster down, exits 130 at once,
    and no training worker is left running (before, the lane's thread kept the process alive)."""
    import psutil

    tree = grid_config(tmp_path, ["sft", "rm"], name="ctrlc")
    tree["train"]["hyper"].update(max_steps=400, save_steps=100)
    path = write_config(tree)
    log = tmp_path / "run.log"
    proc = start_cli("run", path, log=log)
    try:
        wait_for(lambda: "state=running" in log.read_text(), 600, "a cell to start", proc, log)
        time.sleep(3)
        family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert any("RayTrainWorker" in " ".join(psutil.Process(p).cmdline()) for p in family if psutil.pid_exists(p))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 130, log.read_text()[-3000:]
        text = log.read_text()
        assert "interrupted; finished stages are kept" in text
        # at once: the running cell (400 steps) is cut short, and the next one never starts
        assert "tiny-qwen2-sft: state=done" not in text and "tiny-qwen2-rm: state=running" not in text, text[-2000:]
        deadline = time.time() + 60
        while time.time() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                             for p in family):
            time.sleep(1)
        alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        assert not alive, [" ".join(psutil.Process(p).cmdline())[:80] for p in alive]
    finally:
        kill_group(proc)
