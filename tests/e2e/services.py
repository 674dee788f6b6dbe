"""Throwaway PostgreSQL and Redis servers for the Celery deployment, from Debian's packages.

:class:`PostgresCluster` runs ``initdb`` and ``pg_ctl`` into a temporary folder (data, log and
Unix socket all inside it), listening on a free loopback port, with ``trust`` authentication for
its one role ``airflow``: nothing but this machine's loopback reaches it, and it is removed at the
end. Run as root, the cluster belongs to the unprivileged ``postgres`` user the Debian package
creates (PostgreSQL refuses to run as root). :class:`RedisServer` runs ``redis-server`` on a free
loopback port with no persistence, and can record every command it serves (``MONITOR``) to a file.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.deployment import free_port

#: The `make` target that installs the packages; named in the skip message.
MAKE_TARGET = "make services"
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder (Debian keeps one per major version), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name), reverse=True
    )
    return found[0].parent if found else None


def missing_services() -> list[str]:
    """The Debian packages this leg needs that are not installed."""
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if not (os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        missing.append("redis-server")
    return missing


class PostgresCluster:
    """A PostgreSQL cluster of its own in a temporary folder, on a free loopback port."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError(f"PostgreSQL is not installed: run `{MAKE_TARGET}`")
        self.bin = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="aleph-e2e-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        """SQLAlchemy's address of the cluster's ``postgres`` database, for Airflow."""
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> PostgresCluster:
        """Create the cluster (role ``airflow``, trust on loopback and the private socket) and start it."""
        self._run("initdb", "-D", str(self.data), "-U", "airflow", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, as on a restart in production)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        """Stop the server if it runs and delete its folder."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence; :meth:`monitor` records its traffic."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="aleph-e2e-redis-"))
        self.port = free_port()
        self.log = self.folder / "redis.log"
        self.traffic = self.folder / "monitor.txt"
        self.process: subprocess.Popen[bytes] | None = None
        self._monitor: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker address for Celery."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.folder), "--logfile", str(self.log)]
        self.process = subprocess.Popen([REDIS_SERVER, *args], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run(
                [REDIS_CLI, "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
            )
            if ping.stdout.strip() == "PONG":
                return self
            time.sleep(0.2)
        raise RuntimeError(f"redis-server did not answer on port {self.port}: {self.log.read_text(errors='replace')}")

    def monitor(self) -> None:
        """Record every command the server runs from now on (``redis-cli MONITOR``) into :attr:`traffic`."""
        with self.traffic.open("wb") as out:
            self._monitor = subprocess.Popen([REDIS_CLI, "-p", str(self.port), "MONITOR"], stdout=out)

    def stop(self) -> None:
        """Stop the monitor and the server, and delete the folder."""
        for process in (self._monitor, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
