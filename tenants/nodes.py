"""The registry of nodes (Docker engines) and what the instances on them claim."""

from sqlalchemy import func
from sqlmodel import Session, col, select

from tenants import audit
from tenants.models import App, Instance, Node, Tenant
from tenants.schemas import NodeRead


def register(session: Session, actor: str, node: Node) -> None:
    """Add the node, or refresh what is known of it (its capacity may have changed); a change of its state
    (ready, unreachable) is an event."""
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
        if existing.state != node.state:
            audit.record(session, actor, f"node.{node.state}", None, node=node.name, was=existing.state)
        for field in ("driver", "docker_url", "state", "cpu_millicores", "memory_mib"):
            setattr(existing, field, getattr(node, field))
    session.commit()


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
        )
        for node in session.exec(select(Node).order_by(Node.name))
    ]
