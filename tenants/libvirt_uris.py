"""A libvirt hypervisor on another host: `qemu+ssh://[USER@]HOST[:PORT]/system[?socket=PATH]`, as libvirt writes
the URI of one reached over SSH. Checked here, before anything connects; the platform logs in itself (the login of
remote hosts) rather than through libvirt's own ssh transport, so only what that login takes is accepted."""

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from tenants.errors import Invalid
from tenants.ssh_targets import SshTarget, check_socket, parse_target

REMOTE_SCHEME = "qemu+ssh"
DEFAULT_USER = "root"  # libvirt's system instance is root's: its socket is
DEFAULT_LIBVIRT_SOCKET = "/var/run/libvirt/libvirt-sock"  # qemu:///system's
EXAMPLE = "qemu+ssh://root@host2.example.com/system"


@dataclass(frozen=True)
class LibvirtHost:
    target: SshTarget
    socket: str  # the libvirtd's unix socket, on that host

    @property
    def uri(self) -> str:
        """The canonical URI: every part written out, so that one hypervisor has one spelling."""
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        netloc = f"{self.target.user}@{host}:{self.target.port}"
        return f"{REMOTE_SCHEME}://{netloc}/system?socket={self.socket}"


def is_remote(uri: str) -> bool:
    return uri.startswith(f"{REMOTE_SCHEME}://")


def parse_libvirt_uri(text: str, *, field: str = "uri") -> LibvirtHost:
    """The hypervisor `text` names; `Invalid` for anything else (another transport, another driver than QEMU's
    system instance, a parameter libvirt's ssh transport has but this login does not use)."""
    wrong = f"{text!r} is not qemu+ssh://[USER@]HOST[:PORT]/system[?socket=PATH] (e.g. {EXAMPLE})"
    try:
        parts = urlsplit(text.strip())
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise Invalid(wrong, field=field) from None
    if parts.scheme != REMOTE_SCHEME or not parts.netloc or parts.path != "/system" or parts.fragment:
        raise Invalid(wrong, field=field)
    netloc = parts.netloc if "@" in parts.netloc else f"{DEFAULT_USER}@{parts.netloc}"
    target = parse_target(netloc, field=field)
    params = dict(query)
    if len(params) != len(query) or set(params) - {"socket"}:
        raise Invalid(f"{text!r}: the only parameter taken is socket=PATH (of the libvirtd on that host)", field=field)
    try:
        socket = check_socket(params.get("socket", DEFAULT_LIBVIRT_SOCKET))
    except Invalid as exc:
        raise Invalid(exc.message, field=field) from None
    return LibvirtHost(target, socket)
