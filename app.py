"""`python app.py`: serve the chat UI and the JSON API, like `rag serve`; configured by RAG_* variables."""

import sys

from rag.settings import Settings
from rag.web.app import serve

if __name__ == "__main__":
    sys.exit(serve(Settings.from_env()))
