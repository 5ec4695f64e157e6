#!/usr/bin/env bash
# Set up with test tools, run every test (slow, browser and LLM ones too), then guard answer quality.
# Ends with the time each stage took (also when a stage fails), so CI's 90-minute budget stays in view.
set -euo pipefail
cd "$(dirname "$0")/.."

export RAG_TIMINGS="${RAG_TIMINGS:-$(mktemp)}"   # scripts/setup.sh appends its own steps here
began=$SECONDS
stage() {  # stage NAME COMMAND...: run it, record how long it took
    local name=$1 start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    printf '%-40s %6d s%s\n' "$name" $((SECONDS - start)) "$([ $rc -eq 0 ] || echo "  (failed: exit $rc)")" >> "$RAG_TIMINGS"
    return $rc
}
summary() {
    printf '\nTime per stage:\n'
    sed 's/^/  /' "$RAG_TIMINGS"
    printf '  %-40s %6d s\n' "total" $((SECONDS - began))
}
trap summary EXIT

stage "setup (scripts/setup.sh --test)" scripts/setup.sh --test
stage "index data/" .venv/bin/rag index --data data --index index   # the real index; slow tests reuse it
stage "pytest (all tests)" .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
# Regression guard: the eval set's dev split against the committed baseline (never the test split),
# question by question (docs/evaluation.md).
stage "eval guard (dev split vs baseline)" .venv/bin/rag eval --questions eval/questions.jsonl --split dev \
    --name ci-dev --out-dir eval/reports/ci --compare eval/baseline.json
stage "eval guard (conversations, dev split)" .venv/bin/rag eval --questions eval/conversations.jsonl --split dev \
    --name ci-conversations-dev --out-dir eval/reports/ci --compare eval/baseline-conversations.json
