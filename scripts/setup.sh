#!/usr/bin/env bash
# Set up everything the product needs on a fresh machine: .venv, CPU torch, the package, the model.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   also the test tools: pytest, playwright, Debian's chromium and nginx,
#                             and the local LLM server (llama.cpp) with its model
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# torch first, pinned: its CPU wheel is on disk; an unpinned torch would pull GBs of CUDA packages.
.venv/bin/python -c 'import torch' 2>/dev/null || pip install torch==2.13.0

if [ "${1:-}" = "--test" ]; then
    pip install -e ".[test]"
    missing=()
    for pkg in chromium chromium-driver nginx; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    .venv/bin/python -m rag.llm_server fetch   # builds llama-cpp-python once (~10 min), then cached
else
    pip install -e .
fi

.venv/bin/rag model fetch
# The default query backend (onnx-int8) runs an ONNX export of the model: minutes once, then cached.
.venv/bin/python -m rag.quantize export
