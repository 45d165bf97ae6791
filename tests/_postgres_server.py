"""A real PostgreSQL server for the tests: ``initdb`` in a temporary folder, ``pg_ctl start``
on 127.0.0.1 and a free port, stopped (and removed) at the end of the session.

Uses Debian's ``postgresql`` package (``.ci/run`` installs it): the binaries in
``/usr/lib/postgresql/<version>/bin``, or ``initdb`` / ``pg_ctl`` on PATH, or the folder in
``AIO_PG_BIN``. ``initdb`` refuses to run as root, so as root the server runs as the
``postgres`` system user the package creates (``runuser -u postgres``).

    from _postgres_server import postgres_server  # noqa: F401  (the fixture)

    def test_x(postgres_server):
        url = postgres_server.url("mydb")   # postgresql+psycopg://aio@127.0.0.1:PORT/mydb (created)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "aio"


def _bin_dir() -> Path:
    env = os.environ.get("AIO_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise RuntimeError(
        "PostgreSQL is not installed: apt-get install postgresql (as .ci/run does), or set AIO_PG_BIN "
        "to the folder holding initdb and pg_ctl"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    socket_dir: Path
    data_dir: Path

    def dsn(self, db: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={USER} dbname={db}"

    def url(self, db: str) -> str:
        """SQLAlchemy URL of database ``db``, created on first use."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{db}"')
        return f"postgresql+psycopg://{USER}@{self.host}:{self.port}/{db}"


def _as_server_user(root: Path) -> list[str]:
    """Command prefix that runs the server binaries as a user initdb accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root needs the 'postgres' system user (Debian's postgresql package)") from exc
    for path in [root, *root.rglob("*")]:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def start_server() -> tuple[PostgresServer, list[str], Path]:
    bindir = _bin_dir()
    # Not pytest's tmp_path: its parents are private to root and the server may run as postgres.
    # /tmp when root: a private TMPDIR may not be reachable by postgres; short for the socket path.
    root = Path(tempfile.mkdtemp(prefix="aio-pg-", dir="/tmp" if os.geteuid() == 0 and Path("/tmp").is_dir() else None))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix = _as_server_user(root)
    os.chmod(root, 0o755)
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                             "--no-sync"], check=True, capture_output=True, text=True)
    port = _free_port()
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections=200")
    res = subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", opts,
                                   "-w", "-t", "60", "start"], capture_output=True, text=True)
    if res.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {res.stdout}{res.stderr}\n{log[-2000:]}")
    return PostgresServer("127.0.0.1", port, sock, data), prefix, root


def stop_server(server: PostgresServer, prefix: list[str], root: Path) -> None:
    subprocess.run(prefix + [str(_bin_dir() / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"],
                   capture_output=True, text=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server, prefix, root = start_server()
    try:
        yield server
    finally:
        stop_server(server, prefix, root)
