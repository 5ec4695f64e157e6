"""Chunks and vectors -> published index versions, and reading them back.

protocol.py is the seam: `Store` (one version, read-only) and `Backend` (where versions live). The
local files backend (local.py, local_store.py) is the default; build.py writes into any backend.
"""

from __future__ import annotations

from rag.errors import IndexNotFoundError
from rag.index.manifest import check_compatible
from rag.index.protocol import Backend, Store
from rag.settings import Settings


def open_backend(settings: Settings) -> Backend:
    """The backend the settings name: the local folder settings.index_dir, or with
    settings.store = "postgresql://…" that database (whose first build reuses the folder's vectors)."""
    from rag.index.local import LocalBackend

    local = LocalBackend(settings.index_dir)
    if settings.store in ("local", "", None):
        return local
    from rag.index.postgres import PostgresBackend, is_postgres_url

    if not is_postgres_url(settings.store):
        from rag.errors import ConfigError

        raise ConfigError(f"Unknown store {settings.store!r}: use local or a postgresql://… URL.")
    seed = local if local.current_version() is not None else None
    return PostgresBackend(settings.store, settings.cache_dir / "journal", seed=seed)


def rebuild_command(settings: Settings) -> str:
    if settings.store not in ("local", "", None):
        from rag.index.postgres import redacted

        return f"rag index --data {settings.data_dir} --store {redacted(settings.store)}"
    return f"rag index --data {settings.data_dir} --index {settings.index_dir}"


def load_store(settings: Settings, fingerprint: dict | None = None, backend: Backend | None = None) -> Store:
    """The live version; with a model `fingerprint`, refused when it was built with another model."""
    backend = backend or open_backend(settings)
    store = backend.open()
    if store is None:
        raise IndexNotFoundError(f"No index in {backend.location}. Build it first: {rebuild_command(settings)}")
    check_compatible(dict(store.manifest), settings, fingerprint, backend.location, rebuild_command(settings))
    return store


__all__ = ["Backend", "Store", "load_store", "open_backend", "rebuild_command"]
