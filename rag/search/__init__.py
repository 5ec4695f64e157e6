"""Question -> ranked passages: fusion of the store's signals (retrieve.py), an optional rerank (rerank.py)."""
