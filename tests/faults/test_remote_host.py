"""Remote hosts: another machine's Docker engine added as a node over SSH, an app served from it through the front
door, the host lost and its instance moved to the local node, the host back (a changed host key refused), and the
host removed with this platform's containers on it. Timings are printed (`pytest -s`).

The other machine is the test's own (`tests.remote_host`): a network namespace with its own dockerd and OpenSSH
sshd, joined to this host by a bridge the test makes; the daemon reaches it only at its address there."""

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError

from tenants.client import ExecTarget
from tenants.enums import InstanceState, NodeState
from tenants.schemas import AppSpec, InstanceRead, TenantCreate
from tenants.ssh_targets import fingerprint
from tests.containers import platform_id, remove_everything_of, wait_for
from tests.harness import Daemon, start_daemon
from tests.pair import daemon_pair
from tests.postgres import Postgres
from tests.remote_host import LAN, RemoteHost, remote_host
from tui.shell import open_socket


def _netns() -> bool:
    if shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not _netns(), reason="`ip netns` is unavailable here: the test makes its other host with it"),
    pytest.mark.timeout(600),
]

HELLO = AppSpec(
    image="strata/hello", replicas=1, cpu_millicores=250, memory_mib=64, health_path="/healthz",
    env={"GREETING": "from host2"},
)  # fmt: skip


@pytest.fixture
def host() -> Iterator[RemoteHost]:
    with remote_host() as made:
        made.start_dockerd()
        made.start_sshd()
        yield made


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A platform with the local node and the sample images on its image store (only there: the host gets them
    shipped)."""
    home = tmp_path_factory.mktemp("remote") / "home"
    running = start_daemon(home, local_node=True)
    try:
        with running.operator() as api:
            wait_for(lambda: _node(running, "local")["state"] == NodeState.READY, timeout=60, what="local ready")
            api.bootstrap_images()  # once its engine answered (the daemon's first pass may be slow on a busy machine)
        yield running
    finally:
        platform = platform_id(running)
        running.stop()
        remove_everything_of(platform)


def test_bad_remote_hosts_are_refused_saying_why_and_leave_no_node(host: RemoteHost, daemon: Daemon) -> None:
    key = daemon.cli("nodes", "ssh-key")
    assert key.returncode == 0 and key.stdout.startswith("ssh-ed25519 "), key.stderr
    socket = f"--docker-socket={host.docker_socket}"

    refused = daemon.cli("nodes", "add", "host2", "--ssh", f"root@{host.address}:2", socket)
    assert refused.returncode != 0 and f"cannot reach root@{host.address}:2: connection refused" in refused.stderr

    refused = daemon.cli("nodes", "add", "host2", "--ssh", f"root@{host.address}", socket)  # not authorized yet
    assert refused.returncode != 0 and "refused the platform's key" in refused.stderr
    assert key.stdout.strip() in refused.stderr.replace("\n", "")  # the key to authorize, in the message

    host.authorize(key.stdout)
    other = host.host_key("another_host_key")
    refused = daemon.cli("nodes", "add", "host2", "--ssh", f"root@{host.address}", socket, "--host-key", other)
    assert refused.returncode != 0, refused.stdout
    assert f"shows host key {fingerprint(host.host_key())}, not the {fingerprint(other)}" in refused.stderr

    refused = daemon.cli("nodes", "add", "host2", "--ssh", f"root@{host.address}", "--docker-socket=/tmp/none.sock")
    assert refused.returncode != 0 and "no Docker engine answers on /tmp/none.sock" in refused.stderr

    for args, words in (
        (["--ssh", "host2.example"], "is not USER@HOST[:PORT]"),
        (["--ssh", f"root@{host.address}:70000"], "the port must be a number"),
        (["--ssh", f"root@{host.address}", "--flavor", "small"], "it has no flavor"),
        (["--ssh", f"root@{host.address}", "--driver", "qemu"], "whose driver is ssh, not qemu"),
        (["--ssh", f"root@{host.address}", "--docker-socket", "run/docker.sock"], "absolute path"),
        (["--ssh", f"root@{host.address}", "--host-key", "not-a-key"], "not an OpenSSH public key"),
    ):
        refused = daemon.cli("nodes", "add", "host2", *args)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stderr)

    with daemon.operator() as api:
        assert [node.name for node in api.nodes()] == ["local"]
        assert not any(event.detail.get("node") == "host2" for event in api.events())


def test_an_app_on_a_remote_host_is_served_and_moves_when_the_host_is_lost(
    host: RemoteHost, daemon: Daemon, unique: str
) -> None:
    host.authorize(daemon.cli("nodes", "ssh-key").stdout)
    started = time.monotonic()
    added = daemon.cli(
        "nodes", "add", "host2", "--ssh", f"root@{host.address}", f"--docker-socket={host.docker_socket}", "--json"
    )
    assert added.returncode == 0, added.stderr
    print(f"host added and ready: {time.monotonic() - started:.2f} s")
    node = json.loads(added.stdout)
    assert (node["state"], node["driver"], node["ssh"]) == ("ready", "ssh", f"root@{host.address}:22")
    assert node["host_key"] == fingerprint(host.host_key())  # trusted on first use, and recorded
    assert node["cpu_millicores"] > 0 and node["memory_mib"] > 0

    # Only host2 takes new instances: the app lands there, its image shipped from the image store.
    assert daemon.cli("nodes", "drain", "local").returncode == 0
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO)
    (instance,) = wait_for(lambda: _ready_on(daemon, unique, "host2"), timeout=120, what="an instance on host2")
    assert instance.endpoint is not None and instance.endpoint.startswith("127.0.0.1:")  # an SSH forward here
    assert _get(daemon, unique).text.startswith("from host2")
    [container] = host.containers(platform_id(daemon))
    published = json.loads(host.docker("inspect", container).stdout)[0]["NetworkSettings"]["Ports"]
    assert {binding["HostIp"] for bindings in published.values() for binding in bindings} == {"127.0.0.1"}
    [network] = json.loads(host.docker("network", "inspect", f"strata-{platform_id(daemon)[:8]}-{unique}").stdout)
    assert not ip_network(network["IPAM"]["Config"][0]["Subnet"]).overlaps(ip_network(f"{LAN}.0/24"))

    # A daemon started again logs in again, and adopts the instance there, reached through a forward of its own.
    assert daemon.stop() == 0
    daemon.process = start_daemon(daemon.home, daemon.port, local_node=True, like=daemon).process

    def adopted() -> list[InstanceRead] | None:
        found = _ready_on(daemon, unique, "host2")
        return found if found and found[0].endpoint != instance.endpoint else None

    (again,) = wait_for(adopted, timeout=60, what="the instance adopted, through a new forward")
    assert again.id == instance.id
    assert _get(daemon, unique).text.startswith("from host2")

    # The host goes away (its SSH server and sessions killed): past the grace period, the app moves to local.
    assert daemon.cli("nodes", "resume", "local").returncode == 0
    host.kill_sshd()
    lost = time.monotonic()
    wait_for(lambda: _node(daemon, "host2")["state"] == NodeState.UNREACHABLE, timeout=30, what="host2 unreachable")
    (moved,) = wait_for(lambda: _ready_on(daemon, unique, "local"), timeout=120, what="the instance on local")
    print(f"instance ready on local {time.monotonic() - lost:.1f} s after the host was lost")
    assert moved.id != instance.id
    assert _get(daemon, unique).text.startswith("from host2")
    assert "trying again" in (_node(daemon, "host2")["message"] or "")

    # The host comes back showing another host key: refused, and not tried again until an operator says so.
    host.start_sshd("another_host_key")
    failed = wait_for(lambda: (n := _node(daemon, "host2"))["state"] == NodeState.FAILED and n, what="host2 failed")
    assert f"shows host key {fingerprint(host.host_key('another_host_key'))}" in failed["message"]
    host.kill_sshd()

    # Back with its own key and resumed: ready again, and the app still runs one instance.
    host.start_sshd()
    assert daemon.cli("nodes", "resume", "host2").returncode == 0
    wait_for(lambda: _node(daemon, "host2")["state"] == NodeState.READY, timeout=60, what="host2 ready again")
    wait_for(lambda: _one_ready(daemon, unique), timeout=60, what="one ready instance of the app")
    assert _get(daemon, unique).text.startswith("from host2")

    # Drained and removed: its instances move first, and this platform leaves nothing on the host.
    assert daemon.cli("nodes", "drain", "host2").returncode == 0
    wait_for(lambda: _ready_on(daemon, unique, "local"), timeout=120, what="the instance on local")
    removed = daemon.cli("nodes", "remove", "host2", "--yes")
    assert removed.returncode == 0, removed.stderr
    with daemon.operator() as api:
        wait_for(lambda: "host2" not in {n.name for n in api.nodes()}, timeout=30, what="host2 gone")
    assert host.containers(platform_id(daemon)) == []
    assert _get(daemon, unique).status_code == 200


def test_a_remote_host_cut_off_by_its_network_is_given_up_then_rejoins(
    host: RemoteHost, daemon: Daemon, unique: str
) -> None:
    host.authorize(daemon.cli("nodes", "ssh-key").stdout)
    added = daemon.cli(
        "nodes", "add", "host2", "--ssh", f"root@{host.address}", f"--docker-socket={host.docker_socket}"
    )
    assert added.returncode == 0, added.stderr
    assert daemon.cli("nodes", "drain", "local").returncode == 0
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, plan="medium"))
        api.deploy(unique, "web", HELLO)
    wait_for(lambda: _ready_on(daemon, unique, "host2"), timeout=120, what="an instance on host2")
    assert daemon.cli("nodes", "resume", "local").returncode == 0

    # Every packet to and from the host is lost: no connection closes, the keepalives go unanswered.
    host.cut_off()
    cut = time.monotonic()
    wait_for(lambda: _node(daemon, "host2")["state"] == NodeState.UNREACHABLE, timeout=60, what="host2 unreachable")
    print(f"host2 unreachable {time.monotonic() - cut:.1f} s after its network was cut")
    wait_for(lambda: _ready_on(daemon, unique, "local"), timeout=120, what="the instance on local")
    print(f"instance ready on local {time.monotonic() - cut:.1f} s after the host's network was cut")
    assert _get(daemon, unique).text.startswith("from host2")

    # Its network back: the host rejoins, and the app runs one instance.
    host.cut_off(False)
    wait_for(lambda: _node(daemon, "host2")["state"] == NodeState.READY, timeout=60, what="host2 ready again")
    wait_for(lambda: _one_ready(daemon, unique), timeout=60, what="one ready instance of the app")
    assert _get(daemon, unique).text.startswith("from host2")


def test_a_standbys_front_door_and_api_reach_a_remote_hosts_instances_through_logins_of_its_own(
    host: RemoteHost, postgres: Postgres, tmp_path: Path, unique: str
) -> None:
    """Two daemons on one database: the leader drives the host, and the standby's door serves the app there by
    logging in itself. Proof it needs none of the leader's forwards: with the leader frozen (SIGSTOP: its lock
    held, its forwards silent), the standby's door still serves the app, and its API gives the instance's logs
    (followed too) and runs a command in it, through the same login's forward of the host's engine. The host gone,
    its API says so for the logs and a shell, naming it."""
    with daemon_pair(postgres, tmp_path) as pair:
        leader, standby = pair.a, pair.b
        key = standby.cli("nodes", "ssh-key").stdout
        assert key == leader.cli("nodes", "ssh-key").stdout  # one platform key, in both homes
        host.authorize(key)
        added = standby.cli(
            "nodes", "add", "host2", "--ssh", f"root@{host.address}", f"--docker-socket={host.docker_socket}"
        )
        assert added.returncode == 0, added.stderr  # any daemon's API takes it; the leader connects
        assert leader.cli("nodes", "drain", "local").returncode == 0
        with leader.operator() as api:
            api.bootstrap_images()
            api.create_tenant(TenantCreate(name=unique, plan="medium"))
            api.deploy(unique, "web", HELLO)
        (instance,) = wait_for(lambda: _ready_on(leader, unique, "host2"), timeout=120, what="an instance on host2")
        assert _get(leader, unique).text.startswith("from host2")
        assert _get(standby, unique).text.startswith("from host2")
        served_by = wait_for(lambda: _servers(standby, unique), what="the request in the standby's access log")
        assert instance.endpoint not in served_by  # the standby's own forward, not the leader's

        leader.process.send_signal(signal.SIGSTOP)
        try:
            for _ in range(5):
                answer = httpx.get(
                    f"http://{standby.gateway}/", headers={"Host": f"web.{unique}.localhost"}, timeout=10
                )
                assert answer.status_code == 200 and answer.text.startswith("from host2")
            with standby.operator() as api:
                started = f"[{instance.id}] hello: tenant={unique} app=web"
                assert any(line.startswith(started) for line in api.logs(unique, "web")), "the instance's output"
                assert next(api.logs(unique, "web", follow=True)).startswith(started)  # dropped: the stream closes
                target = api.exec_target(unique, "web", instance.id, ["sh", "-c", "echo $GREETING"], tty=False)
            assert _exec(target) == ("from host2\n", 0)

            host.kill_sshd()
            gone = f"[{instance.id}] (logs unavailable: remote host host2 is not reached from this daemon: "
            with standby.operator() as api:
                wait_for(
                    lambda: [line for line in api.logs(unique, "web") if line.startswith(gone)],
                    what="the logs saying host2 is not reached",
                )
            with pytest.raises(ConnectionClosedError) as refused:
                _exec(target)
            assert refused.value.rcvd is not None and refused.value.rcvd.code == 4500
            assert refused.value.rcvd.reason.startswith("remote host host2 is not reached from this daemon: ")
        finally:
            leader.process.send_signal(signal.SIGCONT)


def _exec(target: ExecTarget) -> tuple[str, int]:
    """What the command printed, and its exit code, through the exec WebSocket."""
    output, code = b"", 255
    with open_socket(target) as ws:
        for message in ws:
            if isinstance(message, str):
                code = json.loads(message)["exit"]
                break
            output += message[1:]
    return output.decode(), code


def _servers(daemon: Daemon, tenant: str) -> set[str]:
    """The servers the daemon's front door sent the app's requests to, from its access log (HAProxy's own
    messages are in it too, as they are, not JSON)."""
    log = daemon.home / "logs" / "access.log"  # made with its first line
    lines = log.read_text().splitlines() if log.exists() else []
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return {entry["server"] for entry in entries if entry["tenant"] == tenant}


def _node(daemon: Daemon, name: str) -> dict:
    shown = daemon.cli("nodes", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _ready_on(daemon: Daemon, tenant: str, node: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    return found if found and all(i.node == node and i.state == InstanceState.READY for i in found) else None


def _one_ready(daemon: Daemon, tenant: str) -> list[InstanceRead] | None:
    with daemon.operator() as api:
        found = api.instances(tenant, "web")
    return found if len(found) == 1 and found[0].state == InstanceState.READY else None


def _get(daemon: Daemon, tenant: str) -> httpx.Response:
    """The app's answer through the front door, once it routes there (a moment after its instance is ready)."""

    def served() -> httpx.Response | None:
        answer = httpx.get(f"http://{daemon.gateway}/", headers={"Host": f"web.{tenant}.localhost"}, timeout=10)
        return answer if answer.status_code == 200 else None

    return wait_for(served, timeout=10, what=f"web.{tenant} served through the front door")
