#!/usr/bin/env bash
# The device check (issue 12): ~8 minutes on one GPU; writes results/perf/gpu.json (and $OUT/gpu.json
# when the device tool's $OUT is set). Needs python3 with torch, transformers and peft (the GPU
# machine's image has them) plus trl, datasets, shap and pydantic: where those are missing, carry
# them as wheels in .whl/ (`make gpu-wheels` downloads them here). No Ray is needed.
#   scripts/gpu_check.sh            # the check
#   scripts/gpu_check.sh --smoke    # every code path with a tiny model, on any machine (CPU included)
set -euo pipefail
cd "$(dirname "$0")/.."
# carried wheels only where the interpreter lacks the libraries (they are built for the GPU image's Python)
if ! "${PYTHON:-python3}" -c "import trl, peft, shap, datasets, pydantic" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/rb-site .whl/*.whl
  export PYTHONPATH=/tmp/rb-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"${PYTHON:-python3}" -m bench.perf.gpu --out "${GPU_CHECK_OUT:-results/perf}" "$@"
if [ -n "${OUT:-}" ]; then cp "${GPU_CHECK_OUT:-results/perf}"/gpu*.json "$OUT/"; fi
