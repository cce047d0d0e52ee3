"""The node registry's rules, on a real (migrated) SQLite database."""

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tenants import db, nodes, tenancy, volumes
from tenants.enums import Isolation, NodeState
from tenants.errors import Conflict, Invalid
from tenants.models import Event, Node
from tenants.schemas import NodeCreate, TenantCreate
from tenants.ssh_targets import fingerprint


@pytest.fixture
def session(engine: Engine) -> Session:
    with db.session(engine) as session:
        tenancy.create_tenant(session, "op", TenantCreate(name="acme", isolation=Isolation.DEDICATED))
        tenancy.create_tenant(session, "op", TenantCreate(name="globex"))
        yield session


def test_a_vm_node_is_asked_for_provisioning_and_dedicated_only_to_a_dedicated_tenant(session: Session) -> None:
    node = nodes.add_vm(session, "op", NodeCreate(name="vm1", tenant="acme"), "tcg (kvm unusable: pvm)")
    assert (node.state, node.tenant, node.driver, node.accel) == (
        "provisioning",
        "acme",
        "qemu",
        "tcg (kvm unusable: pvm)",
    )
    with pytest.raises(Conflict, match="exists already"):
        nodes.add_vm(session, "op", NodeCreate(name="vm1"), "tcg")
    with pytest.raises(Invalid, match="globex is shared") as shared:
        nodes.add_vm(session, "op", NodeCreate(name="vm2", tenant="globex"), "tcg")
    assert shared.value.field == "tenant"


def test_a_node_being_removed_stays_removing_whatever_its_engine_reports(session: Session) -> None:
    nodes.add_vm(session, "op", NodeCreate(name="vm1"), "tcg")
    nodes.request_removal(session, "op", "vm1", force=False)
    nodes.register(session, "daemon", Node(name="vm1", driver="qemu", docker_url="unix:///x", state=NodeState.READY))
    assert session.get(Node, "vm1").state == NodeState.REMOVING


def test_the_local_node_is_drained_not_removed(session: Session) -> None:
    nodes.register(session, "daemon", Node(name="local", driver="local", docker_url="unix:///var/run/docker.sock"))
    with pytest.raises(Invalid, match="drain it instead"):
        nodes.request_removal(session, "op", "local", force=True)
    assert nodes.set_draining(session, "op", "local", True).draining
    assert nodes.draining(session) == {"local"}


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_a_remote_host_is_recorded_with_its_login_socket_and_host_key(session: Session) -> None:
    spec = NodeCreate(name="host2", ssh="root@10.213.0.2:2200")
    node = nodes.add_host(session, "op", spec, HOST_KEY)
    assert (node.state, node.driver, node.docker_url) == ("provisioning", "ssh", "ssh://root@10.213.0.2:2200")
    assert (node.host_key, node.docker_socket) == (HOST_KEY, "/var/run/docker.sock")
    [shown] = [n for n in nodes.list_nodes(session) if n.name == "host2"]
    assert (shown.ssh, shown.docker_socket) == ("root@10.213.0.2:2200", "/var/run/docker.sock")
    assert shown.host_key == fingerprint(HOST_KEY) and shown.host_key.startswith("SHA256:")
    [event] = [e for e in session.exec(select(Event)) if e.action == "node.add"]
    assert event.detail["ssh"] == "root@10.213.0.2:2200" and event.detail["host_key"] == fingerprint(HOST_KEY)


def test_one_engine_is_one_node(session: Session) -> None:
    nodes.add_host(session, "op", NodeCreate(name="host2", ssh="root@10.213.0.2"), HOST_KEY)
    with pytest.raises(Conflict, match="exists already"):
        nodes.check_new(session, NodeCreate(name="host2", ssh="root@10.213.0.3"))
    with pytest.raises(Conflict, match="is node host2 already") as taken:
        nodes.check_new(session, NodeCreate(name="host3", ssh="root@10.213.0.2:22"))
    assert taken.value.field == "ssh"
    nodes.check_new(
        session, NodeCreate(name="host3", ssh="root@10.213.0.2", docker_socket="/run/user/1000/docker.sock")
    )
    with pytest.raises(Invalid, match="globex is shared"):
        nodes.check_new(session, NodeCreate(name="host3", ssh="root@10.213.0.9", tenant="globex"))


def test_a_remote_host_holds_no_volume(session: Session) -> None:
    nodes.add_host(session, "op", NodeCreate(name="host2", ssh="root@10.213.0.2"), HOST_KEY)
    session.get(Node, "host2").state = NodeState.READY
    with pytest.raises(Invalid, match="host2' is a remote host") as refused:
        volumes.check_node(session, tenancy.get_tenant(session, "globex"), "host2")
    assert refused.value.field == "node"
