"""The manifest every index version carries, whichever store holds it: the format, the model that made
the vectors, the chunk settings and a hash of each source file. It tells a build whether anything
changed, and a reader whether the version fits the settings it runs with.
"""

from __future__ import annotations

from rag.errors import IndexMismatchError
from rag.ingest.documents import Document
from rag.settings import Settings

FORMAT_VERSION = 1
# Bump when parsing, sentence splitting or chunking changes what gets indexed: `rag index` then
# rebuilds instead of calling an index of the same files up to date (unchanged text keeps its vectors).
PIPELINE_VERSION = 4  # 3: section heading lines quotable, with vectors; 4: letterhead and signature kept


def manifest_head(settings: Settings, fingerprint: dict, documents: list[Document]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "pipeline_version": PIPELINE_VERSION,
        "model": fingerprint,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "sources": {d.id: d.sha256 for d in documents},
    }


def model_identity(fingerprint: dict | None) -> dict | None:
    """The model part of a fingerprint, without the path its documents took (onnx or fp32): the vectors
    are the same to rounding, so either serves; a build still never mixes them (the full fingerprint keys
    reuse)."""
    if not isinstance(fingerprint, dict):
        return fingerprint
    return {key: value for key, value in fingerprint.items() if key != "documents"}


def same_build(manifest: dict, head: dict) -> bool:
    return all(manifest.get(key) == value for key, value in head.items())


def check_compatible(manifest: dict, settings: Settings, fingerprint: dict | None, location: str,
                     rebuild: str) -> None:  # fmt: skip
    """Refuse a version built with another format, model or chunk settings, saying how to rebuild it."""
    problems = []
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(f"format {manifest.get('format_version')} (this version reads {FORMAT_VERSION})")
    if fingerprint is not None and model_identity(manifest.get("model")) != model_identity(fingerprint):
        built_with = manifest.get("model", {}).get("model")
        same_name = ", same name but other files or dimension" if built_with == fingerprint.get("model") else ""
        problems.append(f"model {built_with!r} (settings ask for {fingerprint.get('model')!r}{same_name})")
    for key, value in (("chunk_tokens", settings.chunk_tokens), ("chunk_overlap", settings.chunk_overlap)):
        if manifest.get(key) != value:
            problems.append(f"{key}={manifest.get(key)} (settings ask for {value})")
    if problems:
        raise IndexMismatchError(
            f"The index in {location} was built with {', '.join(problems)}. Rebuild it with "
            f"these settings: {rebuild}"
        )
