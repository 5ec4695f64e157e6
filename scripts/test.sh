#!/usr/bin/env bash
# Set up with test tools, run every test (slow, browser and LLM ones too), then guard answer quality.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/rag index --data data --index index   # the real index; slow tests reuse it
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# Regression guard: the eval set's dev split against the committed baseline (never the test split).
.venv/bin/rag eval --questions eval/questions.jsonl --split dev --name ci-dev \
    --out-dir eval/reports/ci --compare eval/baseline.json
