"""`strata up` as a process: one per home, clean stop, everything kept across a restart, on PostgreSQL too."""

import os
import subprocess
from pathlib import Path

import httpx

from tenants.schemas import AppSpec, TenantCreate
from tests.containers import ready, running_platform, wait_for
from tests.harness import STRATA, start_daemon
from tests.postgres import Postgres


def test_a_second_daemon_on_the_same_home_refuses_to_start(tmp_path: Path) -> None:
    first = start_daemon(tmp_path / "home")
    try:
        second = subprocess.run(
            [*STRATA, "up", "--api", "127.0.0.1:1"], env=first.env, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 1
        assert f"another strata daemon (pid {first.process.pid}) is running" in second.stderr
        with first.client() as client:
            assert client.health().status == "ok"  # the first one is unharmed
    finally:
        assert first.stop() == 0


def test_ctrl_c_stops_cleanly_and_a_restart_keeps_data_and_the_operator_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_daemon(home)
    token = first.operator_token
    with first.operator() as api:
        api.create_tenant(TenantCreate(name="acme"))
        api.deploy("acme", "web", AppSpec(image="strata/hello", replicas=2))
    assert first.stop() == 0
    assert not (home / "api.sock").exists()

    second = start_daemon(home)
    try:
        assert second.operator_token == token
        with second.operator() as api:
            assert api.app("acme", "web").replicas == 2
            assert [e.action for e in api.events("acme") if e.actor != "reconciler"] == ["app.create", "tenant.create"]
    finally:
        assert second.stop() == 0


def test_a_lost_operator_token_file_is_minted_anew(tmp_path: Path) -> None:
    home = tmp_path / "home"
    start_daemon(home).stop()
    (home / "operator.token").write_text("st_forged\n")
    daemon = start_daemon(home)
    try:
        assert daemon.operator_token != "st_forged"
        with daemon.operator() as api:
            assert api.tenants() == []
    finally:
        assert daemon.stop() == 0


def test_a_database_that_does_not_answer_stops_the_start_saying_which_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://strata:s3cret@/strata?host={tmp_path / 'no-server'}"
    env = os.environ | {"STRATA_HOME": str(tmp_path / "home"), "STRATA_DATABASE_URL": url}
    up = subprocess.run([*STRATA, "up", "--no-local-node"], env=env, capture_output=True, text=True, timeout=30)
    assert up.returncode == 1
    assert up.stderr.startswith("error: the database postgresql://strata:***@/strata?host=")
    assert "cannot be opened: connection is bad" in up.stderr and "s3cret" not in up.stderr


def test_on_postgresql_a_tenants_app_is_deployed_and_served(postgres: Postgres, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with postgres.database() as url, running_platform(home, env={"STRATA_DATABASE_URL": url}) as daemon:
        with daemon.operator() as api:
            api.create_tenant(TenantCreate(name="acme"))
            api.deploy("acme", "web", AppSpec(image="strata/hello", replicas=2, health_path="/healthz", memory_mib=64))
        instances = {i.id for i in ready(daemon, "acme", "web", 2)}

        def served() -> str | None:
            answer = httpx.get(f"http://{daemon.gateway}/", headers={"Host": "web.acme.localhost"}, timeout=10)
            return answer.text if answer.status_code == 200 else None

        assert "tenant=acme app=web revision=1" in wait_for(served, what="a route")
        assert {wait_for(served).split("instance=")[1].strip() for _ in range(6)} == instances  # both serve
        with daemon.operator() as api:
            assert [e.action for e in api.events("acme") if e.actor != "reconciler"] == ["app.create", "tenant.create"]
    assert not (home / "strata.db").exists()  # the state went to PostgreSQL alone
