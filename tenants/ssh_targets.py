"""A remote host's Docker engine, reached over SSH: the login `USER@HOST[:PORT]` as `ssh` takes it, the path of
the engine's socket on that host, and the host key it must show. Checked here, before anything connects."""

import ipaddress
import re
from dataclasses import dataclass

from tenants.errors import Invalid
from tenants.names import check_hostname
from tenants.sshkeys import parse_public_key

SSH_DRIVER = "ssh"  # a Node's `driver` when it is a remote host
LIBVIRT_DRIVER = "libvirt"  # a VM node's through libvirt, on this host or (with a qemu+ssh URI) another
DEFAULT_PORT = 22
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the NUL included
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.IGNORECASE)  # POSIX login names, as useradd takes them
_SOCKET = re.compile(r"(/[A-Za-z0-9_.@+-]+)+")


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str  # a hostname or an IP address (IPv6 without brackets)
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    @property
    def url(self) -> str:
        """`ssh://USER@HOST:PORT`: the engine's address as the docker CLI writes one reached over SSH."""
        return f"ssh://{self}"


def parse_target(text: str, *, field: str = "ssh") -> SshTarget:
    """`USER@HOST`, `USER@HOST:PORT` or `USER@[IPV6]:PORT` (or the `ssh://` URL of one); the user is required
    (the daemon would otherwise log in as whoever runs it, which says nothing to the host's operator)."""
    user, at, rest = text.strip().removeprefix("ssh://").rpartition("@")
    if not at or not _USER.fullmatch(user):
        raise Invalid(f"{text!r} is not USER@HOST[:PORT] (e.g. root@host2.example.com)", field=field)
    host, port = _host_and_port(rest, text, field)
    return SshTarget(user, host, port)


def _host_and_port(rest: str, text: str, field: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":") if tail.startswith(":") else (tail or None)
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, None
    if port_text is None:
        port = DEFAULT_PORT
    elif port_text.isdigit() and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise Invalid(f"{text!r}: the port must be a number from 1 to 65535", field=field)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    if "." not in host and re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", host.lower()):
        return host.lower(), port  # a single-label name the host's resolver knows
    try:
        return check_hostname(host, field=field), port
    except Invalid:
        raise Invalid(f"{text!r}: {host!r} is not a hostname or an IP address", field=field) from None


def check_socket(path: str) -> str:
    """An absolute path of plain characters (it goes into an SSH channel request, never a shell)."""
    if len(path) > MAX_SOCKET_PATH or not _SOCKET.fullmatch(path):
        raise Invalid(
            f"{path!r} is not the absolute path of a unix socket (letters, digits and ._@+- only, at most "
            f"{MAX_SOCKET_PATH} characters)",
            field="docker_socket",
        )
    return path


def check_host_key(text: str) -> str:
    """One OpenSSH public key line (what `ssh-keyscan` or the host's `/etc/ssh/ssh_host_*_key.pub` shows),
    returned without its comment."""
    try:
        return parse_public_key(text).openssh
    except Invalid as exc:
        raise Invalid(exc.message, field="host_key") from None


def fingerprint(host_key: str) -> str:
    """`SHA256:...`, as `ssh-keygen -l` and `ssh` show a host key."""
    return parse_public_key(host_key).fingerprint
