"""A private PostgreSQL cluster for the tests: ``initdb`` into a temp dir, ``postgres`` on a free loopback port.

``PostgresServer(durable=True)`` creates the cluster and starts it at once, waiting until it accepts
connections. ``stop()`` is a fast shutdown (SIGINT), ``kill()`` sends SIGKILL to the postmaster (a crash; the
next start replays the WAL), ``restart()`` starts it again on the same port and dir. ``close()`` stops it and
removes the dir.
``durable=False`` sets ``synchronous_commit = off``: commits return before their WAL flush, which loses nothing
unless the server itself crashes; the shared session server runs so (faster), the tests that kill or restart a
server start a durable one of their own.

Authentication: ``trust`` for the superuser ``postgres`` on loopback (``url``), and a password user (``scram``) for
the wrong-password tests: ``password_url(password)`` logs in as ``motia_pw`` (whose real password is
``PASSWORD``). ``limited_url`` logs in as ``motia_limited``, a user without the right to create anything in the
database (no ``CREATE`` on it nor on ``public``), for the missing-permission tests.

Run as root, the cluster belongs to the ``postgres`` OS user (PostgreSQL refuses to run as root): the dir is
chowned to it, ``initdb`` runs through ``runuser -u postgres --`` and the postmaster is started as that user
(``Popen(user=...)``, no intermediate process, so this process reaps it). The executables are found on PATH,
else under ``/usr/lib/postgresql/<version>/bin`` (Debian installs them there, off PATH). The server's output goes
to ``postgres.log`` in its dir; start-up failures quote its tail.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.server_process import ServerProcess, free_port, spawn_tied

#: How long a server may take to accept connections after it was started (WAL replay included).
START_DEADLINE = 60.0
#: How long ``stop()`` waits for a fast shutdown before it kills.
STOP_DEADLINE = 30.0
#: The password of the password user ``motia_pw``.
PASSWORD = "s3cret-pw"


def postgres_bin_dir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's newest ``/usr/lib/postgresql/*/bin``."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("postgres") is not None:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3].split(".")[0])
    )
    return Path(candidates[-1]).parent if candidates else None


def accepts(port: int, timeout: float = 1.0) -> bool:
    """``True`` if something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster on ``127.0.0.1:port`` with its data in ``dir / "data"``."""

    def __init__(self, *, durable: bool = True) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("initdb/postgres are neither on PATH nor under /usr/lib/postgresql/*/bin")
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="motia-postgres-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.durable = durable
        self._as_root = os.geteuid() == 0
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            if self._as_root:
                shutil.chown(self.dir, "postgres", "postgres")
                os.chmod(self.dir, 0o700)
            self._initdb()
            self._start_on_a_free_port()
            self._create_users()
        except BaseException:
            self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        """The superuser's URL (trust on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def password_url(self, password: str = PASSWORD) -> str:
        """The URL of the password user ``motia_pw`` with ``password`` (right: :data:`PASSWORD`)."""
        return f"postgresql://motia_pw:{password}@127.0.0.1:{self.port}/postgres"

    @property
    def limited_url(self) -> str:
        """The URL of ``motia_limited``, who may connect but create nothing."""
        return f"postgresql://motia_limited@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self) -> str:
        return f"<PostgresServer {self.url} dir={self.dir} {'running' if self.running else 'stopped'}>"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=check, cwd=self.dir
        )

    def _initdb(self) -> None:
        result = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        # Trust the superuser and the limited user on loopback; everyone else gives a password (scram).
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all motia_limited 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                "fsync = on\n"
                "log_min_messages = warning\n"
            )
            if not self.durable:  # commits do not wait for the WAL flush (lost only if the *server* crashes)
                conf.write("synchronous_commit = off\n")

    def _start_on_a_free_port(self, attempts: int = 5) -> None:
        """First start: if another process grabbed the free port in between, try another one."""
        for attempt in range(attempts):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == attempts - 1 or "could not bind" not in self._log_tail():
                    raise
                self.port = free_port()

    def start(self) -> None:
        """Start the server (on ``self.port`` and ``self.data``) and wait until it accepts connections.

        The postmaster is this process's child (not daemonized by ``pg_ctl``), so ``kill()`` reaps it:
        a zombie postmaster left unreaped would keep its pid alive and stop the next start."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        log = self._open_log()
        # With its parent gone, an immediate shutdown (SIGQUIT): the postmaster stops its own children and
        # removes its shared memory, which a SIGKILL would leave behind.
        self.proc = spawn_tied(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)],
            signal.SIGQUIT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            user="postgres" if self._as_root else None,
            group="postgres" if self._as_root else None,
            extra_groups=[] if self._as_root else None,
        )
        deadline = time.monotonic() + START_DEADLINE
        while not self._ready():
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    f"postgres on port {self.port} exited with {self.proc.returncode}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"postgres on port {self.port} did not accept connections:\n{self._log_tail()}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        """Whether the server accepts connections (not merely the port: it refuses them while it recovers)."""
        if not accepts(self.port, 0.5):
            return False
        command = [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True).returncode == 0

    def _create_users(self) -> None:
        self.psql(
            f"CREATE ROLE motia_pw LOGIN SUPERUSER PASSWORD '{PASSWORD}';"
            "CREATE ROLE motia_limited LOGIN;"
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
            "REVOKE CREATE ON DATABASE postgres FROM PUBLIC;"
        )

    def psql(self, sql: str) -> str:
        """Run ``sql`` as the superuser over the unix socket; return its output."""
        psql = shutil.which("psql") or str(self.bin_dir / "psql")
        command = [psql, "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        command += ["-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql]
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, the server checkpoints); kill if it takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash; the next start replays the WAL), and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
            self.proc.kill()
            for child in children.stdout.split():
                try:
                    os.kill(int(child), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=STOP_DEADLINE)
        self._close_log()

    def restart(self) -> None:
        """Stop the server if it still runs, then start it again on the same port and dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its dir."""
        try:
            self.stop()
        finally:
            self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)
