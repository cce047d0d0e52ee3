"""The node registry's rules, on a real (migrated) SQLite database."""

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from tenants import db, nodes, tenancy
from tenants.enums import Isolation, NodeState
from tenants.errors import Conflict, Invalid
from tenants.models import Node
from tenants.schemas import NodeCreate, TenantCreate


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
