"""The Gradio chat: layout.py (Blocks and wiring), handlers.py (events), render.py (answer HTML),
labels.py (texts). `build_ui` (and `swedish`, Gradio's missing Swedish strings) is all the app needs."""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

from rag.web.ui.layout import build_ui, swedish

__all__ = ["build_ui", "swedish"]
