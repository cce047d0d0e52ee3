"""PostgreSQL gone (its server stopped under a running daemon), or taking no more connections: every request
answers 503 with Retry-After and changes nothing; once it is back the same write succeeds, once, with no restart
of the daemon, which leads again (its lock's session went with the server)."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from psycopg import sql

from tenants.client import ApiError
from tenants.schemas import TenantCreate
from tests.containers import wait_for
from tests.harness import start_daemon
from tests.postgres import Postgres


@pytest.fixture
def server() -> Iterator[Postgres]:
    """A PostgreSQL server of the test's own: it stops it."""
    server = Postgres.create()
    try:
        server.start()
        server.create_database("strata")
        yield server
    finally:
        server.remove()


def test_an_unreachable_postgresql_is_a_503_and_the_daemon_carries_on_once_it_is_back(
    server: Postgres, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    daemon = start_daemon(home, env={"STRATA_DATABASE_URL": server.url("strata")})
    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name="acme"))
            wait_for(lambda: api.status().leader, what="the daemon to lead")
            server.stop()

            with pytest.raises(ApiError) as refused:
                api.create_tenant(TenantCreate(name="globex"))
            assert (refused.value.status, refused.value.code) == (503, "unavailable")
            transport = httpx.HTTPTransport(uds=str(home / "api.sock"))
            headers = {"Authorization": f"Bearer {daemon.operator_token}"}
            with httpx.Client(transport=transport, base_url="http://strata", headers=headers) as raw:
                answer = raw.get("/tenants")
            assert (answer.status_code, answer.headers["retry-after"]) == (503, "1")

            server.start()
            api.create_tenant(TenantCreate(name="globex"))
            assert [t.name for t in api.tenants()] == ["acme", "globex"]
            wait_for(lambda: api.status().leader, timeout=15, what="the daemon to lead again")
    finally:
        assert daemon.stop() == 0


def test_a_postgresql_that_takes_no_more_connections_is_a_503_until_it_does(server: Postgres, tmp_path: Path) -> None:
    role = sql.Identifier("app")  # not a superuser: PostgreSQL's connection limits spare those
    server.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    server.execute(sql.SQL("ALTER DATABASE strata OWNER TO {}").format(role))
    home = tmp_path / "home"
    home.mkdir()
    daemon = start_daemon(home, env={"STRATA_DATABASE_URL": f"postgresql://app@/strata?host={server.directory}"})
    try:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name="acme"))
            wait_for(lambda: api.status().leader, what="the daemon to lead")
            server.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(role))
            server.execute(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'"))

            with pytest.raises(ApiError) as refused:
                api.create_tenant(TenantCreate(name="globex"))
            assert (refused.value.status, refused.value.code) == (503, "unavailable")

            server.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(role))
            api.create_tenant(TenantCreate(name="globex"))
            assert [t.name for t in api.tenants()] == ["acme", "globex"]
            wait_for(lambda: api.status().leader, timeout=15, what="the daemon to lead again")
    finally:
        assert daemon.stop() == 0
