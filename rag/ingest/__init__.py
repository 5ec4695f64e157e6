"""The text side, no model: report files -> documents -> sections -> sentences -> token-counted chunks."""

from rag.ingest.chunks import chunk_document, count_tokens
from rag.ingest.documents import Document, Skipped, read_documents

__all__ = ["Document", "Skipped", "chunk_document", "count_tokens", "read_documents"]
