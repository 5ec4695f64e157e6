#!/usr/bin/env bash
# Set up, index data/ (incrementally) and serve the chat UI and API on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/rag index --data data --index index
exec .venv/bin/rag serve
