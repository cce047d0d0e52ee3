"""Two daemons on one PostgreSQL database, both placing containers on this host's engine: the first started leads,
the second stands by with the first's secret key and host key for remote hosts in its home, as
docs/scale-out.md says to do."""

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.containers import platform_id, remove_everything_of
from tests.harness import Daemon, start_daemon
from tests.postgres import Postgres

SHARED = ("secret.key", "host_client_key")  # what every daemon's home must hold the same of


@dataclass
class Pair:
    postgres: Postgres
    a: Daemon
    b: Daemon

    @property
    def platform(self) -> str:
        return platform_id(self.a)


@contextmanager
def daemon_pair(
    postgres: Postgres, directory: Path, settings: dict[str, str] | None = None, gateway: str | None = None
) -> Iterator[Pair]:
    """A fresh database and two daemons on it (homes `directory/a` and `/b`, both with STRATA_* `settings`, a's
    front door on `gateway` if given); stopped after, their containers removed."""
    with postgres.database() as url:
        first = start_daemon(directory / "a", local_node=True, env=env(url, "a", settings), gateway=gateway)
        (directory / "b").mkdir(mode=0o700)
        for name in SHARED:
            shutil.copy2(directory / "a" / name, directory / "b" / name)
        try:
            pair = Pair(postgres, first, start_daemon(directory / "b", local_node=True, env=env(url, "b", settings)))
        except BaseException:
            first.stop()
            raise
        platform = pair.platform
        try:
            yield pair
        finally:
            for daemon in (pair.a, pair.b):
                daemon.stop()
            remove_everything_of(platform)


def env(url: str, name: str, settings: dict[str, str] | None = None) -> dict[str, str]:
    return {"STRATA_DATABASE_URL": url, "STRATA_DAEMON_NAME": name, **(settings or {})}


def https_answer(daemon: Daemon, hostname: str, root: Path) -> str | None:
    """The answer for `hostname` over HTTPS at the daemon's front door, trusting `root` only; None until then."""
    port = daemon.https.rpartition(":")[2]
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(root), "--resolve", f"{hostname}:{port}:127.0.0.1",
         f"https://{hostname}:{port}/"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else None
