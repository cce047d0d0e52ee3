"""strata/postgres:15 built for real (debootstrap, `docker import`, `docker build`) and run as the platform runs
containers (no capability, no new privileges, pids and memory limits, the read-only root and tmpfs its label asks
for), on a volume-like directory, reached from this host with Debian's psql.

Needs root, debootstrap, Docker and psql. The build's cache is kept in STRATA_TEST_IMAGES_DIR/postgres (default
/var/tmp/strata-test-images/postgres), so only the first run downloads and debootstraps.
"""

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hosting.iaas.build_script import LOCK_FILE
from hosting.paas.docker_runtime import TMPFS
from hosting.paas.postgres_image import (
    DATA_MOUNT,
    IMAGE,
    POSTGRES_GID,
    POSTGRES_UID,
    RECIPE_LABEL,
    build_postgres_image,
    built_image,
    recipe_digest,
)
from hosting.paas.runtime import READ_ONLY_ROOT_LABEL, declared_capabilities


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "building the image needs root (debootstrap, chroot)"
    for tool, package in (("debootstrap", "debootstrap"), ("psql", "postgresql-client"), ("docker", "docker.io")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian's {package})"
    try:
        answers = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answers = False
    return None if answers else "needs a Docker engine (`docker info` fails)"


pytestmark = [
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
    pytest.mark.timeout(900),  # a cold build downloads and debootstraps
]

WORK_DIR = Path(os.environ.get("STRATA_TEST_IMAGES_DIR", "/var/tmp/strata-test-images")) / "postgres"
MEMORY = "128m"
STOP_TIMEOUT_SECONDS = 5  # the platform's (docker_runtime.STOP_TIMEOUT_SECONDS): past it the engine SIGKILLs
READY_TIMEOUT_SECONDS = 60
# quotes, a space, a dollar and a backslash: whatever is not quoted right on its way breaks the test
PASSWORD = f"p'w\"{secrets.token_hex(8)} $x\\"
OWNER = "o'w\\n\"er"  # a role name to be quoted, as an identifier and as a string


@pytest.fixture(scope="module")
def image() -> str:
    return build_postgres_image(WORK_DIR)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=60)


def psql(port: int, sql: str, *, password: str = PASSWORD, user: str = "app") -> subprocess.CompletedProcess[str]:
    """`sql` run by `user` in database app over TCP to 127.0.0.1:`port`, with a password (never on argv)."""
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}
    args = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", user]
    return subprocess.run([*args, "-d", "app", "-c", sql], capture_output=True, text=True, env=env, timeout=30)


@dataclass
class Postgres:
    container: str
    port: int

    def logs(self) -> str:
        shown = docker("logs", self.container)
        return shown.stdout + shown.stderr

    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.container).stdout)[0]


class Containers:
    """Runs the image as the platform would (`_container_config`), and removes every container it started."""

    def __init__(self, image: str) -> None:
        self.image = image  # by id: a concurrent rebuild may move the tag
        self.labels: dict[str, str] = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["Labels"]
        self.started: list[str] = []

    def run(self, volume: Path, env: dict[str, str]) -> str:
        """Start a container on `volume` with `env` and the platform's PORT, published on 127.0.0.1."""
        env = {"PORT": "5432", **env}
        hardening = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--pids-limit", "256"]
        hardening += ["--memory", MEMORY, "--memory-swap", MEMORY]
        hardening += [arg for cap in declared_capabilities(self.labels) for arg in ("--cap-add", cap)]
        if self.labels.get(READ_ONLY_ROOT_LABEL) == "true":
            hardening += [
                "--read-only",
                *(arg for path, opts in TMPFS.items() for arg in ("--tmpfs", f"{path}:{opts}")),
            ]
        name = f"strata-test-postgres-{secrets.token_hex(4)}"
        self.started.append(name)
        environment = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        mount = ["-v", f"{volume}:{DATA_MOUNT}", "-p", f"127.0.0.1::{env['PORT']}"]
        return docker("run", "-d", "--name", name, *hardening, *environment, *mount, self.image).stdout.strip()

    def start(self, volume: Path, env: dict[str, str]) -> Postgres:
        """A container of the image, once its server accepts connections; its port as published on this host."""
        container = self.run(volume, env)
        port = env.get("PORT", "5432")
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while docker("exec", container, "pg_isready", "-q", "-p", port, check=False).returncode != 0:
            state = json.loads(docker("inspect", container).stdout)[0]["State"]
            if not state["Running"] or time.monotonic() > deadline:
                logs = docker("logs", container)
                pytest.fail(f"postgres not accepting connections ({state['Status']}):\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        return Postgres(container, int(docker("port", container, f"{port}/tcp").stdout.split(":")[-1]))

    def remove_all(self) -> None:
        if self.started:
            docker("rm", "-f", *self.started, check=False)


@pytest.fixture
def containers(image: str) -> Iterator[Containers]:
    made = Containers(image)
    yield made
    made.remove_all()


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A directory as a fresh volume's root is: mode 0777, holding root's lost+found."""
    root = tmp_path / "volume"
    root.mkdir()
    root.chmod(0o777)
    (root / "lost+found").mkdir(mode=0o700)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_image_is_labelled_with_its_recipe_and_runs_unprivileged(image: str) -> None:
    config = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["Labels"][RECIPE_LABEL] == recipe_digest()
    assert config["Labels"][READ_ONLY_ROOT_LABEL] == "true"
    assert declared_capabilities(config["Labels"]) == []
    assert config["User"] == f"{POSTGRES_UID}:{POSTGRES_GID}"
    assert config["StopSignal"] == "SIGINT"
    assert "5432/tcp" in config["ExposedPorts"]


def test_a_second_build_of_the_same_recipe_returns_at_once(image: str) -> None:
    started = time.monotonic()
    assert build_postgres_image(WORK_DIR) == image
    assert time.monotonic() - started < 5
    assert built_image() == image


def test_a_build_waits_for_the_one_in_progress_then_uses_its_image(image: str) -> None:
    steps: list[str] = []
    results: list[str] = []
    waiting = threading.Thread(target=lambda: results.append(build_postgres_image(WORK_DIR, log=steps.append)))
    with (WORK_DIR / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a build in progress holds it
        waiting.start()
        time.sleep(1)
        assert waiting.is_alive()
        assert steps == [f"waiting for another build in {WORK_DIR}"]
    waiting.join(timeout=10)
    assert results == [image]


def test_data_and_password_survive_a_clean_stop_and_a_new_container(containers: Containers, volume: Path) -> None:
    first = containers.start(volume, {"POSTGRES_PASSWORD": PASSWORD})
    made = psql(first.port, "create table notes (body text); insert into notes values ('kept'); select current_user")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "app"
    owner = docker("exec", first.container, "psql", "-XAtc", "select pg_get_userbyid(datdba) from pg_database "
                   "where datname = 'app'")  # the superuser over the socket, as itself  # fmt: skip
    assert owner.stdout.strip() == "app", owner.stderr
    superuser = psql(first.port, "select 1", user="postgres")  # the right password, from the network
    assert superuser.returncode != 0 and "pg_hba.conf rejects connection" in superuser.stderr
    assert sorted(p.name for p in volume.iterdir()) == ["lost+found", "pgdata"]
    assert (volume / "pgdata").stat().st_uid == POSTGRES_UID

    # a client still connected: a smart shutdown (SIGTERM) would wait for it past the timeout and end in SIGKILL
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    connected = ["psql", "-X", "-h", "127.0.0.1", "-p", str(first.port), "-U", "app", "-d", "app"]
    with subprocess.Popen([*connected, "-c", "select pg_sleep(60)"], env=env, stderr=subprocess.PIPE) as client:
        time.sleep(1)
        started = time.monotonic()
        docker("stop", "--time", str(STOP_TIMEOUT_SECONDS), first.container)
        stopping = time.monotonic() - started
    state = first.inspect()["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), first.logs()
    assert stopping < STOP_TIMEOUT_SECONDS - 2
    assert "database system is shut down" in first.logs()
    assert client.returncode != 0  # cut off by the fast shutdown

    second = containers.start(volume, {"POSTGRES_PASSWORD": "not the password: the cluster exists already"})
    kept = psql(second.port, "select body from notes")
    assert (kept.returncode, kept.stdout.strip()) == (0, "kept"), kept.stderr
    assert "making the cluster" not in second.logs()
    refused = psql(second.port, "select 1", password=PASSWORD + "x")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr

    for postgres in (first, second):
        assert PASSWORD not in postgres.logs()
        config = postgres.inspect()
        assert PASSWORD not in json.dumps([config["Path"], config["Args"], config["Config"]["Cmd"]])
        assert PASSWORD not in json.dumps(config["Config"]["Entrypoint"])
    # postgres itself (PID 1, by `exec`) neither holds the password in its environment nor on its command line
    process = docker("exec", second.container, "sh", "-c", "tr '\\0' '\\n' </proc/1/environ; cat /proc/1/cmdline")
    assert "POSTGRES_PASSWORD" not in process.stdout
    assert "postgres\0-D\0/var/lib/postgresql/data/pgdata\0" in process.stdout


def test_a_first_start_without_a_password_fails_and_makes_nothing(containers: Containers, volume: Path) -> None:
    container = containers.run(volume, {})
    status = docker("wait", container).stdout.strip()
    logs = docker("logs", container)
    assert status == "1"
    assert "POSTGRES_PASSWORD is not set" in logs.stderr
    assert [p.name for p in volume.iterdir()] == ["lost+found"]


def test_port_moves_the_server_and_only_postgres_connects_over_the_socket(containers: Containers, volume: Path) -> None:
    postgres = containers.start(volume, {"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_USER": OWNER, "PORT": "6432"})
    over_tcp = psql(
        postgres.port, "select current_user, pg_get_userbyid(datdba) from pg_database where datname = 'app'", user=OWNER
    )
    assert (over_tcp.returncode, over_tcp.stdout.strip()) == (0, f"{OWNER}|{OWNER}"), over_tcp.stderr
    peer = docker("exec", postgres.container, "psql", "-p", "6432", "-Atc", "select current_user", check=False)
    assert (peer.returncode, peer.stdout.strip()) == (0, "postgres"), peer.stderr
    as_owner = docker("exec", postgres.container, "psql", "-p", "6432", "-U", OWNER, "-d", "app", check=False)
    assert as_owner.returncode != 0
    assert f'Peer authentication failed for user "{OWNER}"' in as_owner.stderr


def test_a_forced_rebuild_replaces_the_image_and_removes_the_unused_one(image: str) -> None:
    """Last in the module: it replaces the image the others ran."""
    steps: list[str] = []
    rebuilt = build_postgres_image(WORK_DIR, force=True, log=steps.append)
    assert rebuilt != image
    assert built_image() == rebuilt
    assert not any(step.startswith("debootstrap") for step in steps)  # the debootstrapped tree is reused
    gone = docker("image", "inspect", image, check=False).returncode != 0
    assert gone or still_used(image)


def still_used(image: str) -> bool:
    """Whether the engine refuses to remove `image`: a container of it (another test's, say) or an image built
    FROM it (a catalog app's, a test's probe) holds it."""
    if docker("ps", "-aq", "--filter", f"ancestor={image}").stdout.strip():
        return True
    every = docker("images", "-aq", "--no-trunc").stdout.split()
    parents = docker("image", "inspect", "--format", "{{.Parent}}", *every).stdout.split()
    return docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() in parents
