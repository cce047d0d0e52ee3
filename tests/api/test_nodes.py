"""`/nodes`: asking for VM nodes and remote hosts, refusing bad requests, draining and removing — against a real daemon.

The daemon of these tests has no node image built, so a VM node it is asked for fails, saying what to do;
booting real VMs is tests/iaas (STRATA_VM_TESTS=1)."""

from tenants.enums import Isolation, NodeState, Role
from tenants.schemas import NodeCreate, TenantCreate, TokenCreate
from tests.api.test_api import refused
from tests.containers import wait_for
from tests.harness import Daemon


def test_a_vm_node_without_a_node_image_fails_saying_how_to_build_one(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        asked = api.add_node(NodeCreate(name=f"{unique}-vm", flavor="medium"))
        assert (asked.state, asked.driver, asked.flavor, asked.tenant) == ("provisioning", "qemu", "medium", None)
        assert asked.accel and asked.accel.split(" ")[0] in ("kvm", "tcg")
        failed = wait_for(lambda: (n := api.node(asked.name)).state == NodeState.FAILED and n, what="failed")
        assert "strata images node-build" in (failed.message or "")
        assert f"strata nodes resume {asked.name}" in (failed.message or "")

        retried = api.resume_node(asked.name)  # tried again: it fails again, for the image is still not built
        assert (retried.state, retried.message) == (NodeState.PROVISIONING, None)
        wait_for(lambda: api.node(asked.name).state == NodeState.FAILED, what="failed again")

        api.remove_node(asked.name)
        wait_for(lambda: asked.name not in {n.name for n in api.nodes()}, what="the node to be gone")
        actions = [e.action for e in api.events() if e.detail.get("node") == asked.name]
        assert {"node.add", "node.failed", "node.resume", "node.remove", "node.removed"} <= set(actions)
        assert actions.count("node.failed") == 2


def test_bad_node_requests_are_refused_and_change_nothing(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        before = api.nodes()
        api.create_tenant(TenantCreate(name=unique))
        for spec, field in (
            (NodeCreate(name=f"{unique}-a", flavor="huge"), "flavor"),
            (NodeCreate(name=f"{unique}-b", driver="vmware"), "driver"),
            (NodeCreate(name=f"{unique}-c", tenant=unique), "tenant"),  # a shared tenant gets no dedicated VM
        ):
            error = refused(lambda spec=spec: api.add_node(spec), 422, "invalid")
            assert error.field == field
        refused(lambda: api.add_node(NodeCreate(name=f"{unique}-d", tenant="nobody")), 404)
        refused(lambda: api.drain_node("nowhere"), 404)
        refused(lambda: api.remove_node("nowhere"), 404)
        assert api.nodes() == before


def test_a_dedicated_tenants_vm_is_its_own_and_only_operators_manage_nodes(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        api.create_tenant(TenantCreate(name=unique, isolation=Isolation.DEDICATED))
        node = api.add_node(NodeCreate(name=f"{unique}-vm", tenant=unique))
        assert node.tenant == unique
        refused(lambda: api.add_node(NodeCreate(name=node.name)), 409, "conflict")
        assert api.drain_node(node.name).draining is True
        assert api.resume_node(node.name).draining is False
        token = api.create_token(TokenCreate(role=Role.TENANT, tenant=unique)).token
    with daemon.client(token) as tenant:
        refused(tenant.nodes, 403)
        refused(lambda: tenant.add_node(NodeCreate(name=f"{unique}-x")), 403)
        refused(lambda: tenant.remove_node(node.name), 403)
    with daemon.operator() as api:
        api.remove_node(node.name, force=True)


def test_a_remote_host_that_does_not_answer_is_refused_and_leaves_no_node(daemon: Daemon, unique: str) -> None:
    with daemon.operator() as api:
        before = api.nodes()
        key = api.host_ssh_key()
        assert key.startswith("ssh-ed25519 ") and key.endswith(" strata-hosts")
        error = refused(lambda: api.add_node(NodeCreate(name=f"{unique}-h", ssh="root@127.0.0.1:9")), 422, "invalid")
        assert (error.field, error.message) == ("ssh", "cannot reach root@127.0.0.1:9: connection refused")
        assert api.nodes() == before
        assert not any(event.detail.get("node") == f"{unique}-h" for event in api.events())
        token = api.create_token(
            TokenCreate(role=Role.TENANT, tenant=api.create_tenant(TenantCreate(name=unique)).name)
        )
    with daemon.client(token.token) as tenant:
        refused(tenant.host_ssh_key, 403)
        refused(lambda: tenant.add_node(NodeCreate(name=f"{unique}-h", ssh="root@127.0.0.1:9")), 403)
