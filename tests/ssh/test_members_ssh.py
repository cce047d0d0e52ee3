"""Members over SSH with the real OpenSSH client: each key acts with its member's role, in commands and shells, and
an open session ends within seconds of its member's removal or role change."""

import asyncio
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from tenants.enums import MemberRole, Role
from tenants.schemas import AppSpec, KeyCreate, MemberCreate, TenantCreate
from tests.containers import ready
from tests.harness import Daemon
from tests.ssh.test_git_push import Checkout
from tests.ssh.test_ssh import keypair, ssh, ssh_command
from tui.ssh.server import RECHECK_SECONDS


def member_key(daemon: Daemon, tenant: str, name: str, role: MemberRole, directory: Path) -> Path:
    key = keypair(directory, name)
    with daemon.operator() as api:
        api.add_member(tenant, MemberCreate(name=name, role=role))
        api.add_key(KeyCreate(public_key=Path(f"{key}.pub").read_text(), role=Role.TENANT, tenant=tenant, member=name))
    return key


@pytest.fixture
def serving(platform: Daemon, unique: str) -> str:
    """A tenant with an app running."""
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
        api.deploy(unique, "web", AppSpec(image="strata/hello", memory_mib=64))
    ready(platform, unique, "web", 1)
    return unique


def test_a_viewers_key_reads_but_changes_nothing_and_opens_no_shell(
    platform: Daemon, serving: str, tmp_path: Path
) -> None:
    unique = serving
    viewer = member_key(platform, unique, "vic", MemberRole.VIEWER, tmp_path)
    developer = member_key(platform, unique, "dev", MemberRole.DEVELOPER, tmp_path)

    assert f"{unique}/web" in ssh(platform, viewer, unique, "apps").stdout
    scaled = ssh(platform, viewer, unique, "scale", "web", "2")
    assert scaled.returncode == 1
    assert f"member 'vic' is a viewer of {unique!r}: scale app takes a developer" in scaled.stderr
    shell = ssh(platform, viewer, unique, "shell", "web", "--", "id")
    assert shell.returncode == 1 and f"you are a viewer of {unique!r}: a shell takes a developer" in shell.stderr
    reads = (["events"], ["builds"], ["images"], ["registries"], ["logs", "web"], ["usage"])  # a viewer's
    for command in reads:
        assert ssh(platform, viewer, unique, *command).returncode == 0, command
    for command, takes in (
        (["restart", "web"], "a developer"),
        (["registries", "remove", "registry.example.com"], "an owner"),
    ):
        refused = ssh(platform, viewer, unique, *command)
        assert refused.returncode == 1 and f"is a viewer of {unique!r}" in refused.stderr, command
        assert f"takes {takes}" in refused.stderr, command
    assert ssh(platform, developer, unique, "scale", "web", "2").returncode == 0
    assert ssh(platform, developer, unique, "shell", "web", "--", "true").returncode == 0

    with platform.operator() as api:
        assert api.app(unique, "web").replicas == 2
        sessions = [e for e in api.events(unique, member="vic") if e.action == "ssh.session"]
        fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(viewer)], capture_output=True, text=True, check=True
        ).stdout.split()[1]
    assert {e.actor for e in sessions} == {f"{unique}/vic/ssh:{fingerprint}@127.0.0.1"}
    assert sorted(e.detail["exit_code"] for e in sessions) == [0] * 7 + [1] * 4


def test_an_open_session_ends_within_seconds_of_its_members_removal_or_role_change(
    platform: Daemon, serving: str, tmp_path: Path
) -> None:
    unique = serving
    for name, change in (("ann", "remove"), ("bob", "demote")):
        key = member_key(platform, unique, name, MemberRole.DEVELOPER, tmp_path)
        session = subprocess.Popen(
            ssh_command(platform, key, unique, "shell", "web", "--", "sleep", "60"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(3)  # the shell runs
            assert session.poll() is None, session.communicate()
            with platform.operator() as api:
                if change == "remove":
                    api.remove_member(unique, name)
                else:
                    api.set_member_role(unique, name, MemberRole.VIEWER)
            changed = time.monotonic()
            _, stderr = session.communicate(timeout=30)
            took = time.monotonic() - changed
        finally:
            if session.poll() is None:
                session.kill()
                session.wait()
        assert session.returncode == 1 and "your access to this tenant changed; this session ends" in stderr
        assert took <= RECHECK_SECONDS + 2, f"the session lasted {took:.1f} s after the {change}"
        print(f"\nsession cut {took:.1f} s after the member's {change}")


def test_a_viewers_push_is_refused_and_a_developers_deploys(platform: Daemon, unique: str, tmp_path: Path) -> None:
    with platform.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
    pushes = {}
    for name, role in (("vic", MemberRole.VIEWER), ("dev", MemberRole.DEVELOPER)):
        key = member_key(platform, unique, name, role, tmp_path)
        checkout = Checkout(tmp_path / f"{name}-web", platform, key, unique)
        checkout.commit({"Dockerfile": "FROM strata/static\nCOPY index.html /www/\n", "index.html": f"{name}\n"})
        pushes[name] = checkout.push()
    refused = pushes["vic"]
    assert refused.returncode != 0
    assert f"member 'vic' is a viewer of {unique!r}: build app takes a developer" in "\n".join(refused.remote())
    assert pushes["dev"].returncode == 0, pushes["dev"].stderr
    with platform.operator() as api:
        assert api.app(unique, "web").commit is not None  # the developer's push built and deployed it
        decided = {e.actor.split("/")[1]: e.detail["result"] for e in api.events(unique) if e.action == "git.push"}
    assert decided == {"vic": "rejected", "dev": "deployed"}


def test_a_connection_open_before_its_member_was_removed_opens_no_more_sessions(
    daemon: Daemon, unique: str, tmp_path: Path
) -> None:
    """A client may keep its connection (OpenSSH's ControlMaster) and open sessions on it: each is checked again."""
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique))
    key = member_key(daemon, unique, "ann", MemberRole.DEVELOPER, tmp_path)
    host, port = daemon.ssh.split(":")

    async def sessions() -> tuple[int | None, int | None, str]:
        async with asyncssh.connect(
            host, int(port), username=unique, client_keys=[str(key)], known_hosts=None
        ) as connection:
            first = await connection.run("apps")
            with daemon.operator() as api:
                await asyncio.to_thread(api.remove_member, unique, "ann")
            second = await connection.run("apps")
            return first.exit_status, second.exit_status, str(second.stderr)

    first, second, said = asyncio.run(sessions())
    assert (first, second) == (0, 1) and "this key may not log in any longer" in said
    with daemon.operator() as api:
        assert not [t for t in api.tokens(unique) if t.name.startswith("ssh:")]  # no owner's token was made for it
