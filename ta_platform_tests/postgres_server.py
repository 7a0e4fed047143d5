"""A real PostgreSQL server for tests: initdb into a temporary folder, start on a free loopback port.

Why a real server and not a mock: the point of the Postgres instance storage is concurrency that
SQLite cannot give (four runs creating and writing run storage at once); only the real server shows
it. The Debian package ``postgresql`` provides the binaries (``.ci/run`` installs it); where they are
missing or the server cannot start, ``postgres_or_skip`` raises ``pytest.skip`` naming the reason.

Postgres refuses to run as root: under root the server runs as the ``postgres`` system user the
Debian package creates (``subprocess.Popen(user=...)`` switches user in the child, so the process id
we hold is the postmaster's own and stopping it by that id stops the server). Its data folder is a
fresh ``mkdtemp`` owned by that user, because pytest's ``tmp_path`` (root-only, mode 0700) is not
reachable by it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    pid: int

    def env(self, db_name: str) -> dict[str, str]:
        """The variables config/dagster.postgres.yaml reads."""
        return {"TA_PG_HOST": self.host, "TA_PG_PORT": str(self.port), "TA_PG_USER": self.user,
                "TA_PG_PASSWORD": self.password, "TA_PG_DB": db_name}

    def create_database(self, name: str) -> None:
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname="postgres")
        try:
            con.autocommit = True
            with con.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, else the one on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    """The user the server runs as: ``postgres`` under root (Postgres refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise RuntimeError(f"running as root and there is no {SUPERUSER!r} user to run the server as") from None
    return SUPERUSER


def _wait_ready(bin_dir: Path, port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: {log.read_text()[-2000:]}")
        ready = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                               capture_output=True)
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres not ready on port {port} after {START_TIMEOUT_S:.0f}s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it by its process id (fast shutdown) and delete its files on exit.

    Raises ``RuntimeError`` naming the reason when the server cannot be started.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL binaries not found (Debian: apt-get install postgresql)")
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ta-pg-"))
    process: subprocess.Popen | None = None
    try:
        data, sockets, log = root / "data", root / "sock", root / "server.log"
        sockets.mkdir()
        if user:
            entry = pwd.getpwnam(user)
            os.chmod(root, 0o755)
            for path in (root, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        password = "ta-platform-test"
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        if user:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
             "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"],
            capture_output=True, text=True, user=user, timeout=120)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}): {initdb.stderr[-2000:]}")
        port = _free_port()
        with open(log, "wb") as log_handle:
            process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                 "-k", str(sockets), "-c", "max_connections=200", "-c", "fsync=off"],
                stdout=log_handle, stderr=subprocess.STDOUT, user=user)
        _wait_ready(bin_dir, port, process, log)
        yield PostgresServer("127.0.0.1", port, SUPERUSER, password, process.pid)
    finally:
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)  # fast shutdown: ends sessions, checkpoints, exits
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGQUIT)
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_or_skip() -> Iterator[PostgresServer]:
    """``postgres_server()``, or ``pytest.skip`` with the reason it could not start."""
    try:
        server_cm = postgres_server()
        server = server_cm.__enter__()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"no PostgreSQL server for this test: {error}")
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)
