"""Which engine the API asks for an instance's logs or a shell (`hosting.paas.reach`): the leader its pool, a
standby its own logins for remote hosts; a node reached by neither is said to be, by name and why, in the logs (a
line per instance) and in an exec's close reason, never left out without a word."""

import asyncio
from pathlib import Path

import pytest

from hosting.paas import tunnels
from hosting.paas.fake_runtime import FakeRuntime
from hosting.paas.host_login import HostUnreachable
from hosting.paas.logs import merged_logs
from hosting.paas.nodes import NodeHandle, NodePool
from hosting.paas.reach import Reach
from hosting.paas.runtime import EngineError, EngineUnavailable, InstanceSpec
from hosting.paas.tunnels import HostAddress, Tunnels
from strata.api.exec_routes import MAX_REASON_BYTES, close_reason
from tenants.ssh_targets import SshTarget

HOST2 = HostAddress("host2", "root@10.0.0.2:22", "ssh-ed25519 AAAA2", "/run/docker.sock")


def standby_tunnels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Tunnels:
    """A standby's logins, to host2 only, which refuses them."""

    async def login(target: SshTarget, client: object, host_key: str) -> None:
        raise HostUnreachable(f"cannot reach {target}: connection refused")

    monkeypatch.setattr(tunnels, "login", login)
    return Tunnels(object(), lambda: None, tmp_path)  # type: ignore[arg-type]


def test_the_leader_asks_its_pool_and_names_a_node_it_is_not_connected_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    local = FakeRuntime("local")
    reach = Reach(NodePool([NodeHandle(local, "local", "fake")]), standby_tunnels(monkeypatch, tmp_path), lambda: True)

    assert reach.runtime("local") is local
    with pytest.raises(EngineUnavailable) as host2:
        reach.runtime("host2")  # its connection set aside, say
    assert str(host2.value) == "node host2 is not connected to this daemon now (`strata nodes show host2` says why)"


def test_a_standby_asks_its_own_logins_for_a_remote_host_and_its_pool_for_its_own_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    local = FakeRuntime("local")
    logins = standby_tunnels(monkeypatch, tmp_path)
    reach = Reach(NodePool([NodeHandle(local, "local", "fake")]), logins, lambda: False)

    async def scenario() -> None:
        await logins.endpoints({HOST2: {8080}}, every=True)  # the door's read: host2 has instances
        await asyncio.sleep(0)  # its login, refused
        assert reach.runtime("local") is local
        with pytest.raises(EngineUnavailable) as host2:
            reach.runtime("host2")
        assert str(host2.value) == (
            "remote host host2 is not reached from this daemon: its login failed (this daemon's log says why); "
            f"tried again every {tunnels.RETRY_SECONDS:.0f} s"
        )
        with pytest.raises(EngineUnavailable) as vm:
            reach.runtime("vm1")  # a VM node: the leader's machine's
        assert str(vm.value) == (
            "node vm1 is not reached from this daemon, which stands by (the leader's API reaches it)"
        )
        await logins.close()

    asyncio.run(scenario())


def test_the_logs_say_which_instances_node_is_not_reached_beside_the_others_lines() -> None:
    local = FakeRuntime("local")
    spec = InstanceSpec("p1", "acme", "web", 1, "i1", "strata/hello", None, {}, 8080, 250, 64, 64, "net")
    not_reached = EngineUnavailable("remote host host2 is not reached from this daemon: cannot reach it")

    async def read() -> list[str]:
        await local.ensure_network("net", spec.network_labels)
        container = await local.create(spec)
        local.emit("i1", "hello from local")
        sources = [("i1", local, container.id)]
        return [line async for line in merged_logs(sources, follow=False, since=None, unreached=[("i2", not_reached)])]

    assert asyncio.run(read()) == [
        "[i2] (logs unavailable: remote host host2 is not reached from this daemon: cannot reach it)\n",
        "[i1] hello from local\n",
    ]


def test_an_exec_close_reason_names_the_node_within_a_close_frames_size() -> None:
    why = str(EngineError("remote host host2 is not reached from this daemon: " + "é" * 100))
    cut = close_reason(why)
    assert cut.startswith("remote host host2 is not reached") and why.startswith(cut)
    assert len(cut.encode()) <= MAX_REASON_BYTES and len(close_reason("short")) == 5
