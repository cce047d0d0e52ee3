"""The registry of nodes (Docker engines) and what the instances on them claim."""

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from tenants import audit
from tenants.db import commit
from tenants.enums import Isolation, NodeState
from tenants.errors import Conflict, Invalid, NotFound
from tenants.libvirt_uris import is_remote
from tenants.models import App, Instance, Node, Tenant, Volume
from tenants.schemas import NodeCreate, NodeRead
from tenants.ssh_targets import DEFAULT_DOCKER_SOCKET, SSH_DRIVER, fingerprint, parse_target
from tenants.tenancy import get_tenant


def register(session: Session, actor: str, node: Node) -> None:
    """Add the node, or refresh what is known of it (its capacity may have changed); a change of its state
    (ready, unreachable) is an event. A node being removed stays `removing`."""
    existing = session.get(Node, node.name)
    if existing is None:
        session.add(node)
        audit.record(
            session,
            actor,
            "node.register",
            None,
            node=node.name,
            driver=node.driver,
            cpu_millicores=node.cpu_millicores,
            memory_mib=node.memory_mib,
        )
    else:
        if existing.state == NodeState.REMOVING:
            node.state = existing.state  # the operator asked for its removal: nothing the node says undoes that
        if existing.state != node.state:
            audit.record(session, actor, f"node.{node.state}", None, node=node.name, was=existing.state)
        for field in ("driver", "docker_url", "state", "cpu_millicores", "memory_mib", "message"):
            setattr(existing, field, getattr(node, field))
    session.commit()


def add_vm(session: Session, actor: str, spec: NodeCreate, accel: str, host_key: str | None = None) -> Node:
    """Ask for a VM node: recorded `provisioning`; the daemon boots it and marks it ready. One on another host's
    hypervisor (`spec.uri`, which stays its `docker_url`) has the host key its SSH server showed (`host_key`)."""
    check_new(session, spec)
    node = Node(
        name=spec.name,
        driver=spec.driver,
        docker_url=spec.uri or "",
        state=NodeState.PROVISIONING,
        flavor=spec.flavor,
        tenant=spec.tenant,
        accel=accel,
        host_key=host_key,
    )
    session.add(node)
    remote = {"uri": spec.uri, "host_key": fingerprint(host_key)} if spec.uri and host_key else {}
    audit.record(
        session, actor, "node.add", spec.tenant, node=spec.name, driver=spec.driver, flavor=spec.flavor, **remote
    )
    commit(session, conflict=f"node {spec.name} exists already")
    return node


def add_host(session: Session, actor: str, spec: NodeCreate, host_key: str) -> Node:
    """Record a remote host the daemon has just reached (`host_key` is the key it showed, which every later
    connection must show too): `provisioning` until the daemon connects to it again and its engine answers."""
    assert spec.ssh is not None
    check_new(session, spec)
    target = parse_target(spec.ssh)
    node = Node(
        name=spec.name,
        driver=SSH_DRIVER,
        docker_url=target.url,
        state=NodeState.PROVISIONING,
        tenant=spec.tenant,
        host_key=host_key,
        docker_socket=spec.docker_socket or DEFAULT_DOCKER_SOCKET,
    )
    session.add(node)
    audit.record(
        session, actor, "node.add", spec.tenant, node=spec.name, driver=SSH_DRIVER, ssh=str(target),
        host_key=fingerprint(host_key),
    )  # fmt: skip
    commit(session, conflict=f"node {spec.name} exists already")
    return node


def check_new(session: Session, spec: NodeCreate) -> None:
    """Refuse a node whose name is taken, a remote host's engine that is a node already, or a dedicated node for a
    tenant that is shared."""
    if session.get(Node, spec.name) is not None:
        raise Conflict(f"node {spec.name} exists already")
    if spec.ssh is not None:
        url, socket = parse_target(spec.ssh).url, spec.docker_socket or DEFAULT_DOCKER_SOCKET
        other = session.exec(select(Node.name).where(Node.docker_url == url, Node.docker_socket == socket)).first()
        if other is not None:
            raise Conflict(f"the engine at {url} ({socket}) is node {other} already", field="ssh")
    if spec.tenant is not None:
        tenant = get_tenant(session, spec.tenant)
        if tenant.isolation != Isolation.DEDICATED:
            raise Invalid(
                f"tenant {spec.tenant} is shared: its instances never go to a dedicated node; "
                f"make it dedicated first (strata tenants update {spec.tenant} --isolation dedicated)",
                field="tenant",
            )


def get_node(session: Session, name: str) -> Node:
    node = session.get(Node, name)
    if node is None:
        raise NotFound(f"no node {name}")
    return node


def set_draining(session: Session, actor: str, name: str, draining: bool) -> Node:
    """Drain a node (no new instances; those on it move elsewhere, one by one) or put it back in service; a VM
    node that failed is provisioned again (once what failed is mended, e.g. the node image built)."""
    node = get_node(session, name)
    node.draining = draining
    retry = not draining and node.state == NodeState.FAILED
    if retry:
        node.state, node.message = NodeState.PROVISIONING, None
    action = "node.drain" if draining else "node.resume"
    audit.record(session, actor, action, node.tenant, node=name, **({"retry": True} if retry else {}))
    session.commit()
    return node


def request_removal(session: Session, actor: str, name: str, *, force: bool) -> Node:
    """Mark a VM node or remote host for removal (the daemon destroys its VM, or removes this platform's
    containers from the host, then forgets it). Refused while instances run on it, unless `force`: drain it first
    and they move without downtime."""
    node = get_node(session, name)
    if node.driver == "local":
        raise Invalid("the local node is this host's own engine; it is not removed (drain it instead)", field="name")
    count = session.exec(select(func.count()).select_from(Instance).where(Instance.node == name)).one()
    held = _volumes_by_node(session).get(name, [])
    if held and not force:
        first = held[0].split(" ")[0]
        raise Conflict(
            f"node {name} holds volume(s) {', '.join(held)}; move them first (strata volumes move {first} --to NODE), "
            "or remove it with --force (their data stays on the host, and moves with `strata volumes move`)"
        )
    if count and not force:
        raise Conflict(
            f"node {name} runs {count} instance(s); drain it first (strata nodes drain {name}) "
            "so they move elsewhere, or remove it with --force"
        )
    node.state = NodeState.REMOVING
    audit.record(session, actor, "node.remove", node.tenant, node=name, instances=count)
    session.commit()
    return node


def forget(session: Session, name: str) -> None:
    """Drop a removed node's record, and its instances' (their VM is gone)."""
    node = session.get(Node, name)
    if node is not None:
        for instance in session.exec(select(Instance).where(Instance.node == name)):
            session.delete(instance)
        session.delete(node)
        audit.record(session, "daemon", "node.removed", node.tenant, node=name)
        session.commit()


def of_driver(session: Session, driver: str) -> list[Node]:
    """The nodes of one driver (a hypervisor's VM nodes, or the remote hosts), by name."""
    return list(session.exec(select(Node).where(Node.driver == driver).order_by(Node.name)))


def list_nodes(session: Session) -> list[NodeRead]:
    claims = {
        name: (count, cpu or 0, memory or 0)
        for name, count, cpu, memory in session.exec(
            select(Instance.node, func.count(), func.sum(App.cpu_millicores), func.sum(App.memory_mib))
            .join(App)
            .group_by(Instance.node)
        )
    }
    tenants: dict[str, set[str]] = {}
    placed = (
        select(Instance.node, Tenant.name)
        .join(App, col(Instance.app_id) == App.id)
        .join(Tenant, col(App.tenant_id) == Tenant.id)
    )
    for node, tenant in session.exec(placed):
        tenants.setdefault(node, set()).add(tenant)
    pinned = _volumes_by_node(session)
    return [
        NodeRead(
            name=node.name,
            driver=node.driver,
            state=node.state,
            cpu_millicores=node.cpu_millicores,
            memory_mib=node.memory_mib,
            instances=claims.get(node.name, (0, 0, 0))[0],
            allocated_cpu_millicores=claims.get(node.name, (0, 0, 0))[1],
            allocated_memory_mib=claims.get(node.name, (0, 0, 0))[2],
            tenants=sorted(tenants.get(node.name, ())),
            flavor=node.flavor,
            tenant=node.tenant,
            draining=node.draining,
            accel=node.accel,
            message=node.message,
            volumes=pinned.get(node.name, []),
            **_remote(node),
        )
        for node in session.exec(select(Node).order_by(Node.name))
    ]


def _remote(node: Node) -> dict[str, Any]:
    """What a remote host's row, or a VM node's on another host, shows of how it is reached (its host key by
    fingerprint)."""
    if is_remote(node.docker_url):
        return {"uri": node.docker_url, "host_key": fingerprint(node.host_key) if node.host_key else None}
    if node.driver != SSH_DRIVER:
        return {}
    return {
        "ssh": str(parse_target(node.docker_url)),
        "docker_socket": node.docker_socket,
        "host_key": fingerprint(node.host_key) if node.host_key else None,
    }


def _volumes_by_node(session: Session) -> dict[str, list[str]]:
    """Each node's volumes as `TENANT/VOLUME`, with the app each pins to the node: `acme/data (web)`."""
    users = {(app.tenant_id, mount["volume"]): app.name for app in session.exec(select(App)) for mount in app.volumes}
    found: dict[str, list[str]] = {}
    rows = session.exec(select(Volume, Tenant.name).join(Tenant).order_by(Tenant.name, Volume.name))
    for volume, tenant in rows:
        user = users.get((volume.tenant_id, volume.name))
        found.setdefault(volume.node, []).append(f"{tenant}/{volume.name}" + (f" ({user})" if user else ""))
    return found


def draining(session: Session) -> set[str]:
    """The names of the nodes being drained."""
    return set(session.exec(select(Node.name).where(col(Node.draining))))
