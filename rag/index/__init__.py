"""Chunks and vectors -> published index versions, and reading them back.

protocol.py is the seam: `Store` (one version, read-only) and `Backend` (where versions live). The
local files backend (local.py, local_store.py) is the default; build.py writes into any backend.
"""

from __future__ import annotations

from rag.errors import IndexDamagedError, IndexMismatchError, IndexNotFoundError
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


def load_serving(settings: Settings, fingerprint: dict | None = None,
                 backend: Backend | None = None) -> tuple[Store, str | None]:  # fmt: skip
    """The version to serve: the live one, or when it is damaged the newest intact one kept, with why
    (None when the live one serves). Raises the live version's error when no version is intact."""
    backend = backend or open_backend(settings)
    try:
        return load_store(settings, fingerprint, backend), None
    except IndexDamagedError as error:
        live = backend.current_version()
        for version in reversed(backend.versions()):
            if version == live:
                continue
            try:
                store = backend.open(version)
                check_compatible(dict(store.manifest), settings, fingerprint, backend.location,
                                 rebuild_command(settings))  # fmt: skip
            except (IndexNotFoundError, IndexMismatchError):  # damaged too, or another model's
                continue
            return store, f"{error} Serving the newest intact version, {version}, meanwhile."
        raise


__all__ = ["Backend", "Store", "load_serving", "load_store", "open_backend", "rebuild_command"]
