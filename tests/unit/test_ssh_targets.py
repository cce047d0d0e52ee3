"""A remote host's SSH login, engine socket and host key, as `strata nodes add --ssh` takes them: checked before
anything connects, with messages that say what is wrong."""

import pytest

from tenants.errors import Invalid
from tenants.schemas import NodeCreate
from tenants.ssh_targets import SshTarget, check_host_key, check_socket, parse_target

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    ("text", "target", "shown"),
    [
        ("root@10.213.0.2", SshTarget("root", "10.213.0.2", 22), "root@10.213.0.2:22"),
        ("root@10.213.0.2:2200", SshTarget("root", "10.213.0.2", 2200), "root@10.213.0.2:2200"),
        ("deploy@Host2.Example.com", SshTarget("deploy", "host2.example.com", 22), "deploy@host2.example.com:22"),
        ("ops@host2", SshTarget("ops", "host2", 22), "ops@host2:22"),
        ("root@[fd00::2]:22", SshTarget("root", "fd00::2", 22), "root@[fd00::2]:22"),
        ("root@fd00::2", SshTarget("root", "fd00::2", 22), "root@[fd00::2]:22"),
        ("ssh://root@10.213.0.2:22", SshTarget("root", "10.213.0.2", 22), "root@10.213.0.2:22"),
    ],
)
def test_a_login_is_read_as_ssh_reads_it(text: str, target: SshTarget, shown: str) -> None:
    assert parse_target(text) == target
    assert str(target) == shown
    assert parse_target(target.url) == target  # what the registry keeps reads back the same


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.213.0.2", "is not USER@HOST[:PORT]"),
        ("@10.213.0.2", "is not USER@HOST[:PORT]"),
        ("ro ot@10.213.0.2", "is not USER@HOST[:PORT]"),
        ("-oProxyCommand=x@h", "is not USER@HOST[:PORT]"),
        ("root@10.213.0.2:0", "the port must be a number from 1 to 65535"),
        ("root@10.213.0.2:ssh", "the port must be a number from 1 to 65535"),
        ("root@[fd00::2]x", "the port must be a number"),
        ("root@host_2.example.com", "is not a hostname or an IP address"),
        ("root@-h.example.com", "is not a hostname or an IP address"),
        ("root@", "is not a hostname or an IP address"),
    ],
)
def test_a_bad_login_is_refused_saying_why(text: str, words: str) -> None:
    with pytest.raises(Invalid, match=words.replace("[", r"\[").replace("]", r"\]")) as refused:
        parse_target(text)
    assert refused.value.field == "ssh"


def test_an_engine_socket_is_an_absolute_plain_path() -> None:
    assert check_socket("/run/user/1000/docker.sock") == "/run/user/1000/docker.sock"
    for bad in ("docker.sock", "/run/docker.sock; rm -rf /", "/run/$(id)", "/" + "a" * 200, "/run/\x00x"):
        with pytest.raises(Invalid, match="absolute path"):
            check_socket(bad)


def test_a_host_key_is_one_openssh_public_key_kept_without_its_comment() -> None:
    assert check_host_key(f"{KEY} root@host2") == KEY
    with pytest.raises(Invalid, match="not an OpenSSH public key") as refused:
        check_host_key("SHA256:abc")
    assert refused.value.field == "host_key"


def test_a_node_with_ssh_is_a_remote_host_and_the_ssh_options_need_it() -> None:
    host = NodeCreate(name="host2", ssh="root@10.213.0.2", host_key=f"{KEY} c", docker_socket="/run/docker.sock")
    assert (host.driver, host.ssh, host.host_key) == ("ssh", "root@10.213.0.2:22", KEY)
    assert NodeCreate(name="vm1").driver == "qemu"
    for values in ({"driver": "ssh"}, {"host_key": KEY}, {"docker_socket": "/s"}):
        with pytest.raises(ValueError, match="ssh"):
            NodeCreate(name="n", **values)
    with pytest.raises(ValueError, match="whose driver is ssh, not qemu"):
        NodeCreate(name="n", ssh="root@h2", driver="qemu")
    with pytest.raises(ValueError, match="it has no flavor"):
        NodeCreate(name="n", ssh="root@h2", flavor="small")
