"""A real PostgreSQL 15 server for tests: ``initdb`` on a temp folder, ``pg_ctl start`` on a free 127.0.0.1 port.

Debian's ``postgresql`` package (``.ci/run`` installs it) puts the binaries in :data:`BIN`. PostgreSQL refuses to
run as root, so as root the server runs as the unprivileged user ``nobody`` (through ``runuser``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("MMSUPPORT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "mmsupport"


def missing() -> str | None:
    """Why no server can be started here, or ``None`` when it can."""
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"PostgreSQL 15 binaries not found in {BIN} (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One server in its own temp folder; :meth:`start` / :meth:`stop` may be called again (outage tests)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mmsupport-pg-"))  # not under pytest's root-only tmp folders
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup" if _has_group("nogroup") else None)
        self._run(BIN / "initdb", "-D", self.data, "-U", USER, "--auth=trust", "--encoding=UTF8", "--no-sync")

    def _run(self, *command) -> None:
        command = [str(part) for part in command]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    @property
    def url(self) -> str:
        """URL of the default database ``postgres``."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(BIN / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.root / "server.log",
                  "-o", options)

    def stop(self) -> None:
        self._run(BIN / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.database_url(name)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
