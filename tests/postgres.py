"""A PostgreSQL 15 server (Debian's binaries) run for tests: a cluster of its own in a temporary directory, owned
by an unprivileged user (PostgreSQL refuses to run as root), reached only through a Unix socket in that directory
(mode 0700: only that user and root may connect, so trust is the authentication).

Durability is off (fsync, full-page writes): a test database is thrown away, and `CREATE DATABASE ... TEMPLATE`
of a migrated one (`database(template=...)`) then takes milliseconds, so each test gets a fresh one.
"""

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

BACKENDS = ("sqlite", "postgresql")  # the control-plane databases supported: each test of the database runs on both
BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15 (`make install`)
SUPERUSER = "strata"
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 20
FAST_AND_LOOSE = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")
ODD_TIMEZONE = "timezone=Pacific/Chatham"  # sessions' zone +12:45 or +13:45: a time read back in it, not UTC, shows

_names = itertools.count(1)
# The server's user when the tests run as root (PostgreSQL refuses root); otherwise the tests' own.
USER, GROUP = ("nobody", "nogroup") if os.geteuid() == 0 else (None, None)


@dataclass
class Postgres:
    directory: Path  # the cluster (`data/`), its socket and its log
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> "Postgres":
        """A new cluster (initdb) in a directory of its own under /tmp: pytest's are root's alone."""
        if not (BIN / "postgres").exists():
            raise RuntimeError(f"no PostgreSQL 15 server in {BIN}: `make install` installs postgresql-15")
        directory = Path(tempfile.mkdtemp(prefix="strata-pg-"))
        if USER is not None:
            shutil.chown(directory, USER, GROUP)
        initdb = [str(BIN / "initdb"), "-D", str(directory / "data"), "-U", SUPERUSER, "--auth=trust"]
        initdb += ["--no-sync", "--locale=C.UTF-8", "--encoding=UTF8"]
        done = subprocess.run(initdb, cwd=directory, capture_output=True, text=True, timeout=60, user=USER, group=GROUP)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        return cls(directory)

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.directory}"

    def start(self) -> None:
        settings = ["listen_addresses=", f"unix_socket_directories={self.directory}", *FAST_AND_LOOSE, ODD_TIMEZONE]
        command = [str(BIN / "postgres"), "-D", str(self.directory / "data")]
        command += [arg for setting in settings for arg in ("-c", setting)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=log, user=USER, group=GROUP)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log}")
            try:
                psycopg.connect(self._dsn("postgres"), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not answer within {START_TIMEOUT_SECONDS}s: {self.log}")

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions ended, transactions rolled back), waited for."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self, name: str, template: str = "template1") -> None:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY")  # no WAL: twice as fast here
        self.execute(create.format(sql.Identifier(name), sql.Identifier(template)))

    @contextmanager
    def database(self, template: str = "template1") -> Iterator[str]:
        """A fresh database (a copy of `template`) for the block; its URL. Dropped after, whoever is connected."""
        name = f"test_{os.getpid()}_{next(_names)}"
        self.create_database(name, template)
        try:
            yield self.url(name)
        finally:
            self.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    def _dsn(self, database: str) -> str:
        return f"host={self.directory} user={SUPERUSER} dbname={database}"
