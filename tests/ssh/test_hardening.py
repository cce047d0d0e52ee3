"""The SSH server against scanners and guessers: ssh-audit finds nothing to fail, unauthenticated connections
are throttled by source address (as OpenSSH's PerSourceMaxStartups and PerSourcePenalties), and neither a
start nor a scan makes the daemon log a warning."""

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenants.enums import Role
from tenants.schemas import TenantCreate
from tests.harness import Daemon, start_daemon
from tests.ssh.test_ssh import SSH_OPTIONS, keypair, register, ssh
from tui.ssh.throttle import MAX_STARTUPS_PER_SOURCE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of the test's own: these tests get 127.0.0.1 refused, where every test's client comes from."""
    daemon = start_daemon(tmp_path / "home")
    yield daemon
    assert daemon.stop() == 0


def daemon_log(daemon: Daemon) -> str:
    return (daemon.home.parent / f"{daemon.home.name}-daemon.log").read_text()


def test_ssh_audit_fails_nothing_its_flood_is_throttled_and_no_warning_is_logged(server: Daemon) -> None:
    host, port = server.ssh.split(":")
    audit = subprocess.run(
        [sys.executable, "-m", "ssh_audit", "--no-colors", "-p", port, host], capture_output=True, text=True, timeout=60
    )
    assert "(kex) curve25519-sha256" in audit.stdout, audit.stdout + audit.stderr  # it did audit the server
    assert [line for line in audit.stdout.splitlines() if "[fail]" in line] == []
    log = daemon_log(server)
    assert "refusing 127.0.0.1" in log  # its connection-rate test (a DHEat flood) got its source refused
    assert "Warning" not in log and "Traceback" not in log, log  # neither the start nor the scan warned


def test_git_and_openssh_clients_still_connect(daemon: Daemon, unique: str, tmp_path: Path) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
    key = keypair(tmp_path, "tenant")
    register(daemon, key, Role.TENANT, unique)
    assert ssh(daemon, key, unique, "apps").returncode == 0
    host, port = daemon.ssh.split(":")
    git = subprocess.run(
        ["git", "ls-remote", f"ssh://{unique}@{host}:{port}/web.git"],
        env={"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": " ".join(["ssh", "-i", str(key), *SSH_OPTIONS])},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"error: {unique}/web has no repository: push to it first" in git.stderr  # logged in, served by git


def test_unauthenticated_connections_past_the_limit_are_dropped_at_once(server: Daemon) -> None:
    host, port = server.ssh.split(":")
    waiting = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_STARTUPS_PER_SOURCE)]
    try:
        assert all(s.recv(8) == b"SSH-2.0-" for s in waiting)  # each got the server's version: admitted
        with socket.create_connection((host, int(port)), timeout=5) as extra:
            try:
                assert extra.recv(8) == b""  # closed before the server said anything
            except ConnectionResetError:
                pass
    finally:
        for s in waiting:
            s.close()


def test_a_source_that_keeps_failing_to_log_in_is_refused_for_a_while(server: Daemon, tmp_path: Path) -> None:
    stranger = keypair(tmp_path, "stranger")
    attempts = [ssh(server, stranger, "nobody", "apps") for _ in range(15)]
    assert {a.returncode for a in attempts} == {255}
    outcomes = ["denied" if "Permission denied" in a.stderr else "refused" for a in attempts]
    assert "refused" in outcomes, outcomes  # closed before the handshake: no more tries
    first = outcomes.index("refused")
    assert first >= 5 and set(outcomes[first:]) == {"refused"}, outcomes
