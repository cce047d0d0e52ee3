"""A service's `pg_dump` backups against real PostgreSQL servers (the platform's image): taken from a running
server, verified by a scratch one, refused when damaged, and restored beside the live database, which is
swapped only for a whole restore."""

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hosting.paas import service_backups
from hosting.paas.docker_runtime import DockerRuntime
from hosting.paas.service_backups import DumpError
from tests.paas.test_postgres_image import PASSWORD, Containers, Postgres, containers, image, psql, volume

__all__ = ["containers", "image", "volume"]  # fixtures
T = TypeVar("T")

# Values whose text depends on the session's settings (time zone, bytea output, float digits), or that COPY
# escapes (tabs, newlines, backslashes, NULL), an empty table and a sequence: each must read back the same.
SCHEMA = r"""
CREATE TABLE varied (id serial PRIMARY KEY, at timestamptz, blob bytea, ratio float8, body text, tags text[]);
INSERT INTO varied (at, blob, ratio, body, tags) VALUES
  ('2026-12-06 15:00:00+05', '\x00ff10', 0.1 + 0.2, E'tab\there\nnewline \\ backslash', '{a,"b c"}'),
  (NULL, NULL, 'NaN', NULL, '{}'),
  ('infinity', '', 1e-300, 'ünïcödé ✓', NULL);
ALTER DATABASE app SET TimeZone = 'Asia/Tokyo';
ALTER DATABASE app SET bytea_output = 'escape';
CREATE TABLE empty (x int);
CREATE VIEW shown AS SELECT id, body FROM varied;
"""


def on_engine(work: Callable[[DockerRuntime], Awaitable[T]]) -> T:
    """`work` done with a runtime of this host's engine (as the platform's local node has it)."""

    async def scenario() -> T:
        runtime = DockerRuntime("local", "unix:///var/run/docker.sock")
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    return asyncio.run(scenario())


def server(containers: Containers, volume: Path) -> Postgres:
    made = containers.start(volume, {"POSTGRES_PASSWORD": PASSWORD})
    applied = psql(made.port, SCHEMA)
    assert applied.returncode == 0, applied.stderr
    return made


def dump(postgres: Postgres, archive: Path) -> None:
    on_engine(lambda runtime: service_backups.take(runtime, postgres.container, archive))


def verify(archive: Path, scratch: Path) -> dict[str, str]:
    return on_engine(lambda runtime: service_backups.verify(runtime, archive, scratch, 64 << 20))


def restore(postgres: Postgres, archive: Path) -> None:
    on_engine(lambda runtime: service_backups.restore(runtime, postgres.container, archive))


def test_a_dump_of_a_running_server_reads_back_the_same_in_a_scratch_server(
    containers: Containers, volume: Path, tmp_path: Path
) -> None:
    postgres = server(containers, volume)
    archive = tmp_path / "1.tar"
    dump(postgres, archive)
    started = time.monotonic()
    tables = verify(archive, tmp_path / "scratch")
    print(f"\na dump verified in a scratch server in {time.monotonic() - started:.1f} s")
    assert {table.split(" (")[0] for table in tables} == {"COPY public.varied", "COPY public.empty"}
    assert tables["COPY public.varied (id, at, blob, ratio, body, tags) FROM stdin;"].startswith("4:")  # 3 + header
    assert not (tmp_path / "scratch").exists()  # the scratch server's files are gone


def test_a_damaged_dump_fails_its_verification(containers: Containers, volume: Path, tmp_path: Path) -> None:
    postgres = server(containers, volume)
    filler = psql(postgres.port, "CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g")
    assert filler.returncode == 0, filler.stderr
    archive = tmp_path / "1.tar"
    dump(postgres, archive)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # in the middle of the compressed table data
    archive.write_bytes(bytes(data))
    with pytest.raises(DumpError, match="does not restore into a scratch server"):
        verify(archive, tmp_path / "scratch")


def test_a_restore_replaces_the_live_database_cutting_its_sessions(
    containers: Containers, volume: Path, tmp_path: Path
) -> None:
    postgres = server(containers, volume)
    archive = tmp_path / "1.tar"
    dump(postgres, archive)
    changed = psql(postgres.port, "DELETE FROM varied; INSERT INTO empty VALUES (1); CREATE TABLE later (y int)")
    assert changed.returncode == 0, changed.stderr
    # a session of an app, on the live database, for the whole restore
    holder = subprocess.Popen(
        ["docker", "exec", postgres.container, "psql", "-d", "app", "-c", "SELECT pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1)
        started = time.monotonic()
        restore(postgres, archive)
        took = time.monotonic() - started
        assert holder.wait(timeout=10) != 0  # cut at the swap
    finally:
        holder.kill()
    print(f"\na dump restored beside the live database and swapped in {took:.1f} s")
    assert psql(postgres.port, "SELECT count(*) FROM varied").stdout.strip() == "3"
    assert psql(postgres.port, "SELECT count(*) FROM empty").stdout.strip() == "0"
    assert "does not exist" in psql(postgres.port, "SELECT * FROM later").stderr
    databases = psql(postgres.port, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
    assert databases.stdout.strip() == "app,postgres,template0,template1"
    # the sequence goes on where the dump left it
    assert psql(postgres.port, "INSERT INTO varied (body) VALUES ('n') RETURNING id").stdout.strip() == "4"


def test_a_restore_that_fails_leaves_the_live_database_as_it_was(
    containers: Containers, volume: Path, tmp_path: Path
) -> None:
    postgres = server(containers, volume)
    archive = tmp_path / "1.tar"
    dump(postgres, archive)
    assert psql(postgres.port, "INSERT INTO empty VALUES (42)").returncode == 0
    archive.write_bytes(archive.read_bytes()[:-100])  # the last table's data cut short
    with pytest.raises(DumpError, match="pg_restore failed .the database is as it was."):
        restore(postgres, archive)
    assert psql(postgres.port, "SELECT x FROM empty").stdout.strip() == "42"
    databases = psql(postgres.port, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
    assert databases.stdout.strip() == "app,postgres,template0,template1"  # the half restore is dropped


# A tenant's trap: a CHECK constraint's function that makes `app` a superuser when a superuser runs it, as a
# restore's COPY does for every row unless it runs as `app`.
TRAP = """
CREATE FUNCTION public.esc(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE app SUPERUSER';
  END IF;
  RETURN true;
END $$;
CREATE TABLE trap (x int CHECK (public.esc(x)));
INSERT INTO trap VALUES (1);
"""


def test_a_restore_runs_the_tenants_code_as_the_owner_never_as_the_superuser(
    containers: Containers, volume: Path, tmp_path: Path
) -> None:
    postgres = server(containers, volume)
    assert psql(postgres.port, TRAP).returncode == 0
    archive = tmp_path / "1.tar"
    dump(postgres, archive)
    assert "COPY public.trap (x) FROM stdin;" in verify(archive, tmp_path / "scratch")
    restore(postgres, archive)
    assert psql(postgres.port, "SELECT x FROM trap").stdout.strip() == "1"
    assert psql(postgres.port, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'").stdout.strip() == "f"
