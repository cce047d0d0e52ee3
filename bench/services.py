"""Managed PostgreSQL: the time to provision one, and its verified `pg_dump` backups and restores, each against
the same work done by hand on the same machine in the same run.

    .venv/bin/python bench/services.py [--runs 3] [--rows 200000]

A daemon in a temporary STRATA_HOME (local node), a tenant on the large plan.

- Provision: `services create` through the API until its instance is ready (volume made, container started,
  cluster initialised, the server answering), against `docker run` of the same image on an empty directory
  until `pg_isready` answers (goal: the platform's within 5 s).
- Backup: the platform's backup of a database of `--rows` rows (~100 MiB), dumped and then verified in a scratch
  server, against `pg_dump -Fc` alone (`docker exec` in the same container, to a file): the price of never
  calling an unverified dump a backup.
- Restore: the platform's restore (into a database beside the live one, then swapped), against `pg_restore` of
  the same dump into an empty database of the same server.

Medians of the runs, with the ratio platform/by hand. Needs a Docker engine, root (volumes are loop mounts) and
the image strata/postgres:15 (the first service of a machine builds it). Everything it makes it removes: the
tenant (its service, volume and backups) through the API, the baseline's containers, the daemon (SIGINT).
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import strata_daemon

from tenants.client import StrataClient
from tenants.enums import InstanceState
from tenants.schemas import ServiceCreate, TenantCreate

TENANT = "bench"
PLAN = "large"
TIMEOUT_SECONDS = 600
PROVISION_GOAL_SECONDS = 5.0
IMAGE = "strata/postgres:15"


def run(*command: str, stdout: int | None = None) -> str:
    done = subprocess.run(command, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout.decode(errors="replace") if done.stdout else ""


def timed(work: Callable[[], object]) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {TIMEOUT_SECONDS} s")
        time.sleep(0.05)


def psql(container: str, sql: str, database: str = "app") -> str:
    """`sql` as the superuser over the container's socket."""
    return run("docker", "exec", container, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql)


def ready_container(client: StrataClient, name: str) -> str | None:
    ready = [i for i in client.instances(TENANT, name) if i.state == InstanceState.READY]
    return ready[0].container_id if ready else None


def provision_platform(client: StrataClient, name: str) -> float:
    def made() -> None:
        client.create_service(TENANT, ServiceCreate(name=name, size_mib=1024))
        until(lambda: ready_container(client, name) is not None, f"service {name} ready")

    return timed(made)


def provision_by_hand(scratch: Path, name: str, containers: list[str]) -> float:
    data = scratch / name
    data.mkdir(mode=0o777)
    data.chmod(0o777)

    def made() -> None:
        container = run(
            "docker", "run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "-e", "POSTGRES_PASSWORD=x",
            "-v", f"{data}:/var/lib/postgresql/data", IMAGE,
        ).strip()  # fmt: skip
        containers.append(container)
        ready = ("docker", "exec", container, "pg_isready", "-q")
        until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, "docker run's server ready")

    return timed(made)


def backup_by_hand(container: str, into: Path) -> float:
    with into.open("wb") as out:
        return timed(lambda: run("docker", "exec", container, "pg_dump", "-Fc", "-d", "app", stdout=out.fileno()))


def restore_by_hand(container: str, dump: Path, number: int) -> float:
    database = f"by_hand_{number}"
    psql(container, f"CREATE DATABASE {database} OWNER app")

    def restored() -> None:
        with dump.open("rb") as given:
            done = subprocess.run(
                ["docker", "exec", "-i", container, "pg_restore", "--exit-on-error", "--single-transaction", "-d",
                 database], stdin=given, capture_output=True, timeout=TIMEOUT_SECONDS,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_restore: {done.stderr.decode(errors='replace')[-500:]}")

    took = timed(restored)
    psql(container, f"DROP DATABASE {database}")
    return took


def line(label: str, platform: list[float], by_hand: list[float], goal: str = "") -> str:
    ours, theirs = statistics.median(platform), statistics.median(by_hand)
    return f"  {label:<44} by hand {theirs:6.2f} s | platform {ours:6.2f} s ({ours / theirs:.2f}x){goal}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of ~540 bytes in the measured database")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("volumes are loop mounts: run as root")
    baseline: list[str] = []
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="strata-bench-services-", ignore_cleanup_errors=True) as scratch_dir:
        scratch = Path(scratch_dir)
        home = scratch / "home"
        daemon = strata_daemon.start(
            home, "--local-node", "--gateway", f"127.0.0.1:{strata_daemon.free_port()}", "--gateway-admin",
            f"127.0.0.1:{strata_daemon.free_port()}", "--ssh", "none", "--https", "none",
        )  # fmt: skip
        platform = ""
        try:
            platform = (home / "platform-id").read_text().strip()
            token = (home / "operator.token").read_text().strip()
            with StrataClient(socket=home / "api.sock", token=token, timeout=TIMEOUT_SECONDS) as client:
                client.bootstrap_images()
                client.create_tenant(TenantCreate(name=TENANT, plan=PLAN))
                provision_platform(client, "warm")  # the image built if need be, and its layers in the cache
                for number in range(args.runs):
                    results.setdefault("provision", []).append(provision_platform(client, f"db{number}"))
                    results.setdefault("provision by hand", []).append(
                        provision_by_hand(scratch, f"by-hand-{number}", baseline)
                    )
                container = ready_container(client, "db0")
                assert container is not None
                rows = f"generate_series(1, {args.rows})"
                psql(container, f"CREATE TABLE big AS SELECT g, repeat(md5(g::text), 16) AS body FROM {rows} g")
                size = int(psql(container, "SELECT pg_database_size('app')"))
                for number in range(args.runs):
                    dump = scratch / f"by-hand-{number}.dump"
                    results.setdefault("backup by hand", []).append(backup_by_hand(container, dump))
                    started = time.monotonic()
                    backup = client.create_backup(TENANT, "db0")
                    results.setdefault("backup", []).append(time.monotonic() - started)
                    if backup.state != "verified":
                        raise RuntimeError(f"backup {backup.id}: {backup.message}")
                    results.setdefault("restore by hand", []).append(restore_by_hand(container, dump, number))
                    started = time.monotonic()
                    client.restore_backup(TENANT, backup.id)
                    results.setdefault("restore", []).append(time.monotonic() - started)
                client.delete_tenant(TENANT)
        finally:
            if baseline:
                subprocess.run(["docker", "rm", "-f", *baseline], capture_output=True)
            strata_daemon.stop(daemon, platform)
    provision = statistics.median(results["provision"])
    met = "met" if provision <= PROVISION_GOAL_SECONDS else "missed"
    print(f"managed PostgreSQL 15, {args.runs} run(s), medians; the database {size / 2**20:.0f} MiB ({args.rows} rows)")
    print(line("provision: create until ready", results["provision"], results["provision by hand"],
               f"; goal <= {PROVISION_GOAL_SECONDS:.0f} s: {met}"))  # fmt: skip
    print(line("backup: pg_dump, then verified (platform)", results["backup"], results["backup by hand"]))
    print(line("restore: beside the live one, swapped (platform)", results["restore"], results["restore by hand"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
