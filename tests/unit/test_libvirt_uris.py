"""A VM node on another host's hypervisor, as `strata nodes add NAME --driver libvirt --uri` takes it: the URI
checked before anything connects, kept in one spelling, with messages that say what is wrong."""

import pytest

from tenants.errors import Invalid
from tenants.libvirt_uris import LibvirtHost, is_remote, parse_libvirt_uri
from tenants.schemas import NodeCreate
from tenants.ssh_targets import SshTarget

SOCKET = "/var/run/libvirt/libvirt-sock"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("qemu+ssh://10.213.0.2/system", LibvirtHost(SshTarget("root", "10.213.0.2", 22), SOCKET)),
        ("qemu+ssh://ops@h2.example.com:2200/system", LibvirtHost(SshTarget("ops", "h2.example.com", 2200), SOCKET)),
        ("qemu+ssh://root@[fd00::2]/system", LibvirtHost(SshTarget("root", "fd00::2", 22), SOCKET)),
        ("qemu+ssh://root@h2/system?socket=/tmp/lv/sock", LibvirtHost(SshTarget("root", "h2", 22), "/tmp/lv/sock")),
    ],
)  # fmt: skip
def test_a_uri_is_read_as_libvirt_reads_it_and_kept_in_one_spelling(text: str, host: LibvirtHost) -> None:
    parsed = parse_libvirt_uri(text)
    assert parsed == host
    assert parse_libvirt_uri(parsed.uri) == host and is_remote(parsed.uri)
    assert parsed.uri.startswith(f"qemu+ssh://{host.target}/system?socket=")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("qemu:///system", "is not qemu+ssh://"),
        ("qemu+tcp://10.213.0.2/system", "is not qemu+ssh://"),
        ("qemu+ssh://10.213.0.2/session", "is not qemu+ssh://"),
        ("qemu+ssh:///system", "is not qemu+ssh://"),
        ("xen+ssh://10.213.0.2/system", "is not qemu+ssh://"),
        ("qemu+ssh://10.213.0.2/system#x", "is not qemu+ssh://"),
        ("qemu+ssh://10.213.0.2:70000/system", "the port must be a number"),
        ("qemu+ssh://ro ot@10.213.0.2/system", "is not USER@HOST"),
        ("qemu+ssh://root@host_2/system", "is not a hostname or an IP address"),
        ("qemu+ssh://10.213.0.2/system?keyfile=/root/.ssh/id", "the only parameter taken is socket=PATH"),
        ("qemu+ssh://10.213.0.2/system?socket=/a&socket=/b", "the only parameter taken is socket=PATH"),
        ("qemu+ssh://10.213.0.2/system?socket=run/sock", "absolute path"),
        ("qemu+ssh://10.213.0.2/system?socket=/a;rm", "absolute path"),
    ],
)
def test_a_bad_uri_is_refused_saying_why(text: str, words: str) -> None:
    with pytest.raises(Invalid, match=words.replace("[", r"\[").replace("+", r"\+")) as refused:
        parse_libvirt_uri(text)
    assert refused.value.field == "uri"


def test_a_vm_node_on_another_host_is_libvirt_s_and_may_pin_a_host_key() -> None:
    spec = NodeCreate(name="vm9", driver="libvirt", uri="qemu+ssh://10.213.0.2/system", host_key=KEY + " c")
    assert spec.uri == f"qemu+ssh://root@10.213.0.2:22/system?socket={SOCKET}" and spec.host_key == KEY
    assert spec.flavor == "small"
    for fields, words in (
        ({"uri": "qemu+ssh://10.213.0.2/system"}, "it takes driver libvirt, not qemu"),
        ({"driver": "libvirt", "uri": "qemu:///system"}, "is not qemu+ssh://"),
        ({"driver": "libvirt", "host_key": KEY}, "host_key is a remote host's"),
        ({"driver": "libvirt", "uri": "qemu+ssh://h2/system", "docker_socket": "/s"}, "docker_socket is a remote host"),
        ({"driver": "libvirt", "uri": "qemu+ssh://h2/system", "ssh": "root@h2"}, "whose driver is ssh, not libvirt"),
    ):
        with pytest.raises(ValueError, match=words.replace("+", r"\+")):
            NodeCreate(name="vm9", **fields)
