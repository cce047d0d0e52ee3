"""A standby's forwards to remote hosts' instances and engines (`hosting.paas.tunnels`), on stand-in SSH
connections: logins run beside the door's reads, a partial look (a wake's) lets nothing go, a whole one lets go what
it no longer names, a host that refused is tried again only after a pause, and a host's engine not reached is said
to be, naming it and why."""

import asyncio
from itertools import count
from pathlib import Path

import pytest

from hosting.paas import tunnels
from hosting.paas.host_login import HostUnreachable
from hosting.paas.runtime import EngineUnavailable
from hosting.paas.tunnels import HostAddress, Tunnels
from tenants.ssh_targets import SshTarget

HOST2 = HostAddress("host2", "root@10.0.0.2:22", "ssh-ed25519 AAAA2", "/run/docker.sock")
HOST3 = HostAddress("host3", "root@10.0.0.3:22", "ssh-ed25519 AAAA3", "/run/docker.sock")


class Listener:
    def __init__(self, port: int) -> None:
        self.port, self.closed = port, False

    def get_port(self) -> int:
        return self.port

    def close(self) -> None:
        self.closed = True


class Connection:
    """What `RemoteMachine` uses of an asyncssh connection: a local forward per port, and one of the engine's
    socket."""

    ports = count(40000)

    def __init__(self) -> None:
        self.closed = False
        self.forwards: dict[int, Listener] = {}
        self.sockets: dict[str, str] = {}  # the socket here -> the host's

    async def forward_local_port(self, host: str, port: int, to_host: str, to_port: int) -> Listener:
        self.forwards[to_port] = Listener(next(self.ports))
        return self.forwards[to_port]

    async def forward_local_path(self, path: str, to_path: str) -> Listener:
        self.sockets[path] = to_path
        return Listener(0)

    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_forwards_are_made_beside_the_reads_and_let_go_only_by_a_whole_look(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: dict[str, Connection] = {}
    refused = {"10.0.0.3"}
    clock = [0.0]

    async def login(target: SshTarget, client: object, host_key: str) -> Connection:
        address = target.host
        if address in refused:
            raise HostUnreachable(f"cannot reach {address}")
        made[address] = Connection()
        return made[address]

    monkeypatch.setattr(tunnels, "login", login)

    async def scenario() -> None:
        connected = asyncio.Event()
        ours = Tunnels(object(), connected.set, tmp_path, monotonic=lambda: clock[0])  # type: ignore[arg-type]
        assert await ours.endpoints({HOST2: {8080}, HOST3: {9090}}, every=True) == {}  # logging in meanwhile
        await asyncio.wait_for(connected.wait(), 1)
        found = await ours.endpoints({HOST2: {8080, 8081}, HOST3: {9090}}, every=True)
        host2 = made["10.0.0.2"]
        assert found == {
            ("host2", 8080): f"127.0.0.1:{host2.forwards[8080].port}",
            ("host2", 8081): f"127.0.0.1:{host2.forwards[8081].port}",
        }  # host3 refused: its instances are not routed here
        await ours.endpoints({HOST2: {8081}})  # a wake's look, at one app: nothing let go
        assert not host2.forwards[8080].closed and not host2.closed
        await ours.endpoints({HOST2: {8081}}, every=True)  # the door's own: what it no longer routes goes
        assert host2.forwards[8080].closed and not host2.forwards[8081].closed

        refused.clear()
        await ours.endpoints({HOST3: {9090}}, every=True)  # host2 no longer wanted; host3 not tried yet again
        assert host2.closed and "10.0.0.3" not in made
        clock[0] += tunnels.RETRY_SECONDS
        connected.clear()
        await ours.endpoints({HOST3: {9090}}, every=True)
        await asyncio.wait_for(connected.wait(), 1)
        assert await ours.endpoints({HOST3: {9090}}, every=True) == {
            ("host3", 9090): f"127.0.0.1:{made['10.0.0.3'].forwards[9090].port}"
        }
        await ours.close()
        assert made["10.0.0.3"].closed

    asyncio.run(scenario())


def test_a_hosts_engine_is_reached_through_the_same_login_or_said_not_to_be(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: dict[str, Connection] = {}
    refused = {"10.0.0.3": "cannot reach root@10.0.0.3:22: connection refused"}

    async def login(target: SshTarget, client: object, host_key: str) -> Connection:
        if target.host in refused:
            raise HostUnreachable(refused[target.host])
        made[target.host] = Connection()
        return made[target.host]

    monkeypatch.setattr(tunnels, "login", login)

    async def scenario() -> None:
        connected = asyncio.Event()
        ours = Tunnels(object(), connected.set, tmp_path / "sockets")  # type: ignore[arg-type]
        assert "host2" not in ours
        await ours.endpoints({HOST2: set(), HOST3: {9090}}, every=True)  # host2's instances publish no port
        assert "host2" in ours and "host3" in ours  # their engines are wanted all the same
        with pytest.raises(EngineUnavailable) as logging_in:
            ours.runtime("host2")
        assert str(logging_in.value) == (
            "remote host host2 is not reached from this daemon: this daemon is logging in to it; ask again in a moment"
        )

        await asyncio.wait_for(connected.wait(), 1)
        await asyncio.sleep(0)  # host3's login, refused, ended beside it
        engine = ours.runtime("host2")
        socket = tmp_path / "sockets" / "standby-host2.sock"
        assert (engine.name, getattr(engine, "url", None)) == ("host2", f"unix://{socket}")
        assert made["10.0.0.2"].sockets == {str(socket): "/run/docker.sock"}  # on the login its forwards use
        with pytest.raises(EngineUnavailable) as host3:
            ours.runtime("host3")
        assert str(host3.value) == (
            "remote host host3 is not reached from this daemon: its login failed (this daemon's log says why); "
            f"tried again every {tunnels.RETRY_SECONDS:.0f} s"
        )  # the user, address and error are the operator's: a tenant's shell or logs are told no more

        made["10.0.0.2"].close()  # the host went away
        with pytest.raises(EngineUnavailable, match="host2 .* its SSH connection dropped; this daemon logs in again"):
            ours.runtime("host2")
        await ours.endpoints({HOST3: {9090}}, every=True)  # host2's instances gone from the records
        with pytest.raises(EngineUnavailable, match="not logged in to it"):
            ours.runtime("host2")
        assert "host2" not in ours
        await ours.close()

    asyncio.run(scenario())
