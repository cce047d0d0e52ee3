"""Another machine, made by a test on this one: a network namespace with a Docker engine and an OpenSSH server of
its own (SFTP starts in the host's directory: what a login's home would be), joined to this host by a bridge the
test makes, on a /24 of 10.213.0.0/16 no route here uses.

The daemon under test reaches it only at its address in that namespace, as it would a host across a network. The
engine listens on a socket in the host's temporary directory (namespaces share the filesystem: /var/run/docker.sock
is this host's engine's), which the node is added with (`--docker-socket`); it has no iptables rules, and its
default bridge is inside the namespace. The host has a network of its own (`LAN`) where the platform would put a
tenant's network if it looked at this host's routes instead of the host's. Everything is started and ended by its
PID, and removed after."""

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hosting.paas.subnets import host_routes
from tests.containers import wait_for

LAN = "10.210.0"  # the host's own network, a /24 of the platform's pool of tenant subnets: none may overlap it
SSHD_START_SECONDS = 30  # seconds on a loaded machine (a TCG guest and other tests beside)
PRIVSEP = Path("/run/sshd")  # OpenSSH's privilege separation directory, which its packaged service makes
SSHD_CONFIG = """ListenAddress {address}:22
HostKey {root}/{host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
Subsystem sftp internal-sftp -d {root}
"""


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that no route of this host overlaps, picked from the test's PID (runs in parallel
    take different ones)."""
    used = [ipaddress.ip_network(route) for route in host_routes()]
    candidates = list(ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24))
    start = os.getpid() % len(candidates)
    for candidate in candidates[start:] + candidates[:start]:
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no /24 of 10.213.0.0/16 is free on this host")


@dataclass
class RemoteHost:
    root: Path
    namespace: str
    bridge: str
    address: str  # the host's, in its namespace
    link: str  # this side of the veth pair to it, on the bridge
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def docker_socket(self) -> Path:
        return self.root / "docker.sock"

    def host_key(self, name: str = "ssh_host_ed25519_key") -> str:
        """A host key of the sshd's (made on first use): OpenSSH's public line, without its comment."""
        path = self.root / name
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
        return " ".join(path.with_suffix(".pub").read_text().split()[:2])

    def authorize(self, public_key: str) -> None:
        (self.root / "authorized_keys").write_text(public_key.strip() + "\n")

    def start_sshd(self, host_key: str = "ssh_host_ed25519_key") -> None:
        """OpenSSH's server on the host's address, port 22, with `host_key` (made if new)."""
        self.host_key(host_key)
        config = self.root / "sshd_config"
        config.write_text(SSHD_CONFIG.format(address=self.address, root=self.root, host_key=host_key))
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 (the process owns it)
        self.processes["sshd"] = self._in_namespace(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], log)
        try:
            wait_for(self._sshd_listens, timeout=SSHD_START_SECONDS, what="the host's sshd to listen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends: {(self.root / 'sshd.log').read_text()[-1000:]}") from None

    def start_dockerd(self) -> None:
        root = self.root
        command = [
            "dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{self.docker_socket}",
            "--iptables=false", "--ip-masq=false",
        ]  # fmt: skip
        self.processes["dockerd"] = self._in_namespace(command, open(root / "dockerd.log", "ab"))  # noqa: SIM115
        wait_for(lambda: self.docker("info").returncode == 0, timeout=60, what="the host's dockerd to answer")

    def kill_sshd(self) -> None:
        """SIGKILL the server and every session of it, as a host that dies would drop them."""
        process = self.processes.pop("sshd", None)
        if process is None:
            return
        for pid in [*_descendants(process.pid), process.pid]:
            _kill(pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_dockerd(self) -> None:
        process = self.processes.pop("dockerd", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    def cut_off(self, cut: bool = True) -> None:
        """Take the host's link down (every packet to and from it lost, as when its network fails), or up again."""
        _ip("link", "set", self.link, "down" if cut else "up")

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"DOCKER_HOST": f"unix://{self.docker_socket}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)

    def containers(self, platform: str) -> list[str]:
        return self.docker("ps", "-aq", f"--filter=label=strata.platform={platform}").stdout.split()

    def _in_namespace(self, command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        """Run `command` in the host's network namespace only (`ip netns exec` would also remount /sys, and the
        cgroups with it, which dockerd needs); nsenter execs it, so the PID is the command's."""
        return subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.namespace}", *command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip

    def _sshd_listens(self) -> bool:
        listening = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.namespace}", "ss", "-Hltn"], capture_output=True, text=True
        ).stdout
        return f"{self.address}:22 " in listening


def _ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check).stdout


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, children before their parents."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # it ended meanwhile
            children.setdefault(parent, []).append(int(entry.name))

    def below(parent: int) -> list[int]:
        return [pid for child in children.get(parent, []) for pid in [*below(child), child]]

    return below(pid)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@contextmanager
def remote_host() -> Iterator[RemoteHost]:
    """A host with its namespace, bridge, dockerd and sshd (not started: the test says when); all of it ended and
    removed after, its engine's containers first."""
    tag = str(os.getpid() % 100000)
    subnet = _free_subnet()
    gateway, address = str(subnet[1]), str(subnet[2])
    root = Path(tempfile.mkdtemp(prefix="sh-", dir="/tmp"))  # short: socket paths under it are limited
    host = RemoteHost(root, f"strata-host-{tag}", f"strb{tag}", address, f"strv{tag}")
    made_privsep = not PRIVSEP.exists()
    PRIVSEP.mkdir(mode=0o755, exist_ok=True)
    try:
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", host.bridge)
        _ip("link", "set", host.bridge, "up")
        _ip("link", "add", host.link, "type", "veth", "peer", "name", f"strp{tag}")
        _ip("link", "set", host.link, "master", host.bridge, "up")
        _ip("link", "set", f"strp{tag}", "netns", host.namespace)
        _ip("-n", host.namespace, "addr", "add", f"{address}/24", "dev", f"strp{tag}")
        _ip("-n", host.namespace, "link", "set", f"strp{tag}", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "link", "add", "lan", "type", "bridge")  # a network of its own, in the platform's
        _ip("-n", host.namespace, "addr", "add", f"{LAN}.1/24", "dev", "lan")  # pool of tenant subnets
        _ip("-n", host.namespace, "link", "set", "lan", "up")
        yield host
    finally:
        host.kill_sshd()
        if "dockerd" in host.processes and host.docker("info").returncode == 0:
            ids = host.docker("ps", "-aq").stdout.split()
            if ids:
                host.docker("rm", "-f", *ids)
        host.stop_dockerd()
        _ip("netns", "del", host.namespace, check=False)  # its end of the veth goes with it, and so the other
        _ip("link", "del", host.link, check=False)
        _ip("link", "del", host.bridge, check=False)
        for mount in _mounts_under(root):  # what a container stopped with its engine may leave mounted
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)
        if made_privsep:
            PRIVSEP.rmdir()


def _mounts_under(root: Path) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True)
