#!/usr/bin/env bash
# Local LLM server (llama.cpp + Qwen2.5-Coder-1.5B-Instruct Q4_K_M) for the project venv.
#
#   scripts/llm-server.sh fetch                # build/install llama-cpp-python[server], assemble the model
#   scripts/llm-server.sh start [--port 8080]  # start in the background, return when ready
#   scripts/llm-server.sh stop                 # stop it
#   scripts/llm-server.sh serve [--port 8080]  # run in the foreground until Ctrl-C
#
# The OpenAI-compatible API is then at http://127.0.0.1:8080/v1 with model name "local".
# Cache (wheel, model, logs, pidfile): $RAG_CACHE_DIR, else ~/.cache/tyreso-rag.
# Python: $RAG_PYTHON, else the project's .venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${RAG_PYTHON:-$ROOT/.venv/bin/python}"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

if [ ! -x "$PY" ]; then
  echo "error: no Python at $PY. Create the project venv first (python3.11 -m venv $ROOT/.venv and install the project), or set RAG_PYTHON." >&2
  exit 1
fi

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch|start|stop|serve)
    cd "$ROOT"
    exec "$PY" -m rag.llm_server "$cmd" "$@"
    ;;
  -h|--help|help)
    usage; exit 0 ;;
  *)
    usage; exit 2 ;;
esac
