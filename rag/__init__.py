"""Cited question answering over Kommundirektörens rapport (Tyresö kommun).

Data flow, one module per stage: documents -> sections -> chunks -> embed -> index -> retrieve
-> answer, with pipeline (the Assistant), cli, api/ui and evaluate as thin layers on top.
"""

from rag.errors import RagError
from rag.settings import Settings

__all__ = ["RagError", "Settings"]
