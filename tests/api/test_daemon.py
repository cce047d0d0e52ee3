"""`strata up` as a process: one per home, clean stop, and everything kept across a restart."""

import subprocess
from pathlib import Path

from tenants.schemas import AppSpec, TenantCreate
from tests.harness import STRATA, start_daemon


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
