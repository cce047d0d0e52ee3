"""Managed PostgreSQL through the platform: a real PostgreSQL 15 (the platform's image, built here from Debian's
packages) on a real volume, bound to a real app, reached by its tenant's containers only."""

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tenants.client import ApiError
from tenants.enums import InstanceState
from tenants.schemas import AppSpec, InstanceRead, ServiceCreate, TenantCreate, VolumeCreate
from tests.containers import ready, steady_requests, wait_for
from tests.harness import Daemon
from tests.paas.test_serving import through_gateway

WEB = AppSpec(image="strata/static", memory_mib=32, cpu_millicores=100)


def sh(container: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True)


def psql(endpoint: str, url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """`psql` on this host, through the service's port published on 127.0.0.1, with the app's credentials."""
    parts = urlsplit(url)
    local = parts._replace(netloc=f"{parts.username}:{parts.password}@{endpoint}").geturl()
    return subprocess.run(["psql", local, "-XAtc", sql], capture_output=True, text=True, timeout=30)


def database(platform: Daemon, tenant: str) -> InstanceRead:
    [instance] = wait_for(
        lambda: [i for i in _instances(platform, tenant, "db") if i.state == InstanceState.READY],
        timeout=600,  # the first service of a machine builds the image
        what="the database ready",
    )
    return instance


def _instances(platform: Daemon, tenant: str, app: str) -> list[InstanceRead]:
    with platform.operator() as api:
        return api.instances(tenant, app)


def bind(platform: Daemon, tenant: str, size_mib: int) -> tuple[str, InstanceRead, str]:
    """`tenant`'s service db (on a volume of `size_mib`) bound to its app web: web's container, db's instance,
    the DATABASE_URL web got."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=tenant, plan="small"))
        api.create_service(tenant, ServiceCreate(name="db", size_mib=size_mib))
        api.deploy(tenant, "web", WEB)
        api.bind_service(tenant, "db", "web")
    [web] = ready(platform, tenant, "web", 1, revision=2)
    url = sh(web.container_id, "echo $DATABASE_URL").stdout.strip()
    return web.container_id, database(platform, tenant), url


@pytest.fixture
def bound(platform: Daemon, unique: str) -> tuple[str, InstanceRead, str]:
    return bind(platform, unique, 64)


def test_a_bound_app_gets_a_working_database_url_that_no_listing_shows(
    platform: Daemon, unique: str, bound: tuple[str, InstanceRead, str]
) -> None:
    web, db, url = bound
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("postgresql", "db", 5432, "/app")
    assert parts.username == "app" and parts.password and len(parts.password) >= 24
    assert sh(web, "nc -w 3 db 5432 </dev/null").returncode == 0  # reached by name on its tenant's network

    assert db.endpoint is not None
    made = psql(db.endpoint, url, "create table notes (body text); insert into notes values ('kept'); select 1")
    assert made.returncode == 0 and made.stdout.split()[-1] == "1", made.stderr
    wrong = psql(db.endpoint, url.replace(parts.password, "wrong"), "select 1")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr

    with platform.operator() as api:
        shown = [api.app(unique, "web"), api.app(unique, "db"), api.service(unique, "db"), *api.events(unique)]
    assert all(parts.password not in json.dumps(item.model_dump(mode="json")) for item in shown)
    assert parts.password not in platform.cli("services", "show", f"{unique}/db").stdout

    with platform.operator() as api:
        api.restart(unique, "db")  # stop, then start on the same volume
    again = wait_for(
        lambda: [i for i in _instances(platform, unique, "db") if i.state == InstanceState.READY and i.revision == 2],
        timeout=120,
        what="the database restarted",
    )
    assert again[0].endpoint is not None
    assert psql(again[0].endpoint, url, "select body from notes").stdout.strip() == "kept"


def test_another_tenants_containers_cannot_reach_the_database(
    platform: Daemon, unique: str, bound: tuple[str, InstanceRead, str]
) -> None:
    _, db, _ = bound
    address = json.loads(
        subprocess.run(["docker", "inspect", db.container_id], capture_output=True, text=True, check=True).stdout
    )[0]["NetworkSettings"]["Networks"]
    [db_ip] = [network["IPAddress"] for network in address.values()]
    other = f"{unique}-other"
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=other, plan="small"))
        api.deploy(other, "web", WEB)
    [stranger] = ready(platform, other, "web", 1)
    by_name = sh(stranger.container_id, "nc -w 3 db 5432 </dev/null")
    by_address = sh(stranger.container_id, f"nc -w 3 {db_ip} 5432 </dev/null")
    assert by_name.returncode != 0 and by_address.returncode != 0, (by_name, by_address)


def test_a_bound_service_is_deleted_only_by_force_and_its_apps_lose_the_url(
    platform: Daemon, unique: str, bound: tuple[str, InstanceRead, str]
) -> None:
    with platform.operator() as api:
        with pytest.raises(ApiError, match="bound to app 'web'"):
            api.delete_service(unique, "db")
        with pytest.raises(ApiError, match="manage it with `strata services`"):
            api.deploy(unique, "db", WEB)
        api.delete_service(unique, "db", force=True)
        assert api.services(unique) == [] and api.volumes(unique) == []
    [web] = ready(platform, unique, "web", 1, revision=3)
    assert sh(web.container_id, "echo ${DATABASE_URL:-none}").stdout.strip() == "none"
    assert not (platform.home / "volumes" / unique / "db").exists()


def test_a_100_mb_database_is_dumped_and_restored_within_a_minute_while_its_app_runs(
    platform: Daemon, unique: str
) -> None:
    """A service's backup is a `pg_dump`, verified by a scratch server; its restore replaces the live database
    beside it, and the bound app runs on throughout. A dump restores into a service only."""
    web, db, url = bind(platform, unique, 512)
    assert db.endpoint is not None
    fill = "create table big as select g, repeat(md5(g::text), 16) as body from generate_series(1, 200000) g"
    assert psql(db.endpoint, url, fill).returncode == 0
    size = psql(db.endpoint, url, "select pg_database_size('app')").stdout.strip()
    assert int(size) >= 100 << 20, size
    started = time.monotonic()
    with platform.operator() as api:
        backup = api.create_backup(unique, "db")
    dumped = time.monotonic() - started
    assert backup.state == "verified", backup.message
    assert (backup.kind, backup.files) == ("pg_dump", 1)  # one table
    assert psql(db.endpoint, url, "drop table big; create table later (x int)").returncode == 0

    with platform.operator() as api:
        api.create_volume(unique, VolumeCreate(name="files", size_mib=512))
        with pytest.raises(ApiError, match="restores into a service only") as refused:
            api.restore_backup(unique, backup.id, "files")
        assert refused.value.status == 409
        started = time.monotonic()
        api.restore_backup(unique, backup.id)
    took = time.monotonic() - started
    counted = psql(db.endpoint, url, "select count(*) from big")  # the same server: it was never stopped
    assert counted.stdout.strip() == "200000", counted.stderr
    assert "does not exist" in psql(db.endpoint, url, "select * from later").stderr
    assert [i.container_id for i in _instances(platform, unique, "web")] == [web]  # its app ran on
    assert took <= 60, f"the restore took {took:.1f} s"
    print(f"\n100 MB database ({int(size) >> 20} MiB): dumped and verified in {dumped:.1f} s, restored in {took:.1f} s")


# An app that opens a session of its service on every request: busybox httpd running a CGI that calls psql.
PROBE_IMAGE = "strata/test-database-probe"
PROBE_DOCKERFILE = """\
FROM strata/static AS busybox
FROM strata/postgres:15
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
COPY q /www/cgi-bin/q
ENTRYPOINT ["/usr/local/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""
PROBE_CGI = """\
#!/bin/sh
if out=$(psql "$DATABASE_URL" -XAtc 'select current_user, session_user' 2>&1); then
  printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' "$out"
else
  printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n' "$out"
fi
"""


def build_probe(tmp_path: Path) -> str:
    (tmp_path / "Dockerfile").write_text(PROBE_DOCKERFILE)
    (tmp_path / "q").write_text(PROBE_CGI)
    (tmp_path / "q").chmod(0o755)
    subprocess.run(["docker", "build", "-q", "-t", PROBE_IMAGE, str(tmp_path)], check=True, capture_output=True)
    return PROBE_IMAGE


def test_rotating_the_credentials_fails_no_request_and_retires_the_old_login(
    platform: Daemon, unique: str, tmp_path: Path
) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.create_service(unique, ServiceCreate(name="db", size_mib=64))  # the image built first, if need be
        image = build_probe(tmp_path)
        api.deploy(unique, "web", AppSpec(image=image, replicas=2, health_path="/cgi-bin/q", memory_mib=64))
        api.bind_service(unique, "db", "web")
    db = database(platform, unique)
    [web, _] = ready(platform, unique, "web", 2, revision=2)
    old_url = sh(web.container_id, "echo $DATABASE_URL").stdout.strip()
    host = f"web.{unique}.localhost"
    wait_for(lambda: through_gateway(platform, host, "/cgi-bin/q").status_code == 200, what="a route")
    assert db.endpoint is not None
    assert psql(db.endpoint, old_url, "create table kept (x int); insert into kept values (7)").returncode == 0
    with platform.operator() as api:
        before = api.create_backup(unique, "db")  # its roles are the first ones: restored at the end
    assert before.state == "verified", before.message
    db = database(platform, unique)
    assert db.endpoint is not None

    with steady_requests(platform, host, "/cgi-bin/q") as load:
        rotated = platform.cli("services", "credentials", "rotate", f"{unique}/db", "--json", timeout=180)
    assert rotated.returncode == 0, rotated.stderr
    rotation = json.loads(rotated.stdout)
    assert rotation["retiring"] is None and rotation["waiting_for"] == []
    login = rotation["login"]
    assert login.startswith("app_")

    assert set(load.statuses) == {200} and load.statuses[200] > 20, load
    assert load.texts["app|app"] and load.texts[f"app|{login}"], load  # it spanned the roll; the owner acts throughout
    [new_web, _] = ready(platform, unique, "web", 2, revision=3)
    new_url = sh(new_web.container_id, "echo $DATABASE_URL").stdout.strip()
    assert urlsplit(new_url).username == login and urlsplit(new_url).password != urlsplit(old_url).password
    assert psql(db.endpoint, new_url, "insert into kept values (8); select sum(x) from kept").stdout.split()[-1] == "15"
    refused = psql(db.endpoint, old_url, "select 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr

    again = platform.cli("services", "credentials", "rotate", f"{unique}/db", "--json", timeout=180)
    assert again.returncode == 0, again.stderr
    newest = ready(platform, unique, "web", 2, revision=4)[0].container_id
    newest_url = sh(newest, "echo $DATABASE_URL").stdout.strip()
    assert psql(db.endpoint, newest_url, "select count(*) from kept").stdout.strip() == "2"
    gone = psql(db.endpoint, new_url, "select 1")  # the rotated-in login was dropped in turn
    assert gone.returncode != 0 and "password authentication failed" in gone.stderr

    with platform.operator() as api:  # the backup's roles are older: the logins are made what the row says again
        api.restore_backup(unique, before.id)
    restored = database(platform, unique)
    assert restored.endpoint is not None
    assert psql(restored.endpoint, newest_url, "select count(*) from kept").stdout.strip() == "1"
    stale = psql(restored.endpoint, old_url, "select 1")  # valid in the backup, retired since
    assert stale.returncode != 0 and "password authentication failed" in stale.stderr
    with platform.operator() as api:
        shown = [api.service(unique, "db"), api.app(unique, "web"), *api.events(unique)]
    secrets = [urlsplit(u).password for u in (old_url, new_url, newest_url)]
    assert all(s and s not in json.dumps(item.model_dump(mode="json")) for item in shown for s in secrets)
