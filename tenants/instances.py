"""What the reconciler reads and records: the desired state of every app, and the instances it runs.

The reconciler owns the `instance` rows; it rewrites one only when the instance changes, and writes the
audit events of its actions in the same transaction.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, delete, select, update

from tenants import audit
from tenants.enums import InstanceState, TenantStatus
from tenants.models import App, Instance, Plan, Tenant, Volume, saved_id

RECONCILER = "reconciler"


@dataclass(frozen=True)
class DesiredApp:
    """One app as the reconciler must make it run; `replicas` is 0 for a suspended tenant, and while a volume
    it mounts is being restored or moved."""

    tenant: str
    isolation: str
    app_id: int
    name: str
    revision: int
    replicas: int
    image: str
    command: list[str] | None
    port: int
    cpu_millicores: int
    memory_mib: int
    env: dict[str, str]
    health_path: str | None
    hostnames: list[str]
    requests_per_second: int  # the tenant's plan: the gateway's rate limit and body limit
    burst: int
    max_body_mib: int
    https_redirect: bool = False  # the front door: plain HTTP answered with a 308 to https
    hsts: bool = False  # the front door: Strict-Transport-Security on its HTTPS answers
    volumes: tuple[tuple[str, str], ...] = ()  # (the tenant's volume, the path it is mounted at)
    volume_node: str | None = None  # where its volumes' data lives: its instance runs there and nowhere else
    kind: str = "web"  # AppKind: only web apps are routed by the front door
    sealed_env: tuple[tuple[str, str], ...] = ()  # (name, encrypted value): decrypted into the container's env
    idle_stop_seconds: int = 0  # it sleeps after this long without a request (the app's or its plan's); 0: never


@dataclass(frozen=True)
class ActionEvent:
    """An audit event of a reconciler action, written with the instance changes it caused."""

    action: str
    tenant: str
    detail: dict[str, Any]


def desired_apps(session: Session) -> list[DesiredApp]:
    found = list(session.exec(select(Volume)))
    nodes = {(v.tenant_id, v.name): v.node for v in found}
    restoring = {(v.tenant_id, v.name) for v in found if v.restoring or v.moving_to is not None}
    rows = session.exec(
        select(App, Tenant, Plan)
        .join(Tenant, col(App.tenant_id) == Tenant.id)
        .join(Plan, col(Tenant.plan) == Plan.name)
        .order_by(Tenant.name, App.name)
    )
    return [
        DesiredApp(
            tenant=tenant.name,
            isolation=tenant.isolation,
            app_id=saved_id(app),
            name=app.name,
            revision=app.revision,
            replicas=0 if tenant.status == TenantStatus.SUSPENDED or _restoring(app, restoring) else app.replicas,
            image=app.image,
            command=app.command,
            port=app.port,
            cpu_millicores=app.cpu_millicores,
            memory_mib=app.memory_mib,
            env=dict(app.env),
            health_path=app.health_path,
            hostnames=list(app.hostnames),
            requests_per_second=plan.requests_per_second,
            burst=plan.burst,
            max_body_mib=plan.max_body_mib,
            https_redirect=app.https_redirect,
            hsts=app.hsts,
            volumes=tuple((mount["volume"], mount["path"]) for mount in app.volumes),
            kind=app.kind,
            sealed_env=tuple(sorted(app.sealed_env.items())),
            idle_stop_seconds=app.idle_stop_seconds if app.idle_stop_seconds is not None else plan.idle_stop_seconds,
            volume_node=next((nodes[key] for m in app.volumes if (key := (app.tenant_id, m["volume"])) in nodes), None),
        )
        for app, tenant, plan in rows
    ]


def _restoring(app: App, restoring: set[tuple[int, str]]) -> bool:
    """The app mounts a volume being restored or moved: none of its instances runs until that is over."""
    return any((app.tenant_id, mount["volume"]) in restoring for mount in app.volumes)


def load_instances(session: Session) -> dict[str, Instance]:
    return {row.id: row for row in session.exec(select(Instance))}


def record(
    session: Session,
    changed: Iterable[Instance],
    removed: Iterable[str],
    events: Iterable[ActionEvent],
    problems: Mapping[int, str | None] | None = None,
) -> None:
    """Write changed instance rows, delete removed ones, set apps' problems (app id -> why it does not run as
    asked, None once it does) and log the actions, in one transaction.

    Rows of apps deleted meanwhile are skipped (their foreign key is gone).
    """
    live_apps = set(session.exec(select(App.id)))
    for row in changed:
        if row.app_id in live_apps:
            session.merge(row)
    for app_id, problem in (problems or {}).items():
        session.exec(update(App).where(col(App.id) == app_id).values(problem=problem))
    removed = list(removed)
    if removed:
        session.exec(delete(Instance).where(col(Instance.id).in_(removed)))
    for event in events:
        audit.record(session, RECONCILER, event.action, event.tenant, **event.detail)
    session.commit()


def instances_of(session: Session, app_ids: Iterable[int]) -> dict[int, list[Instance]]:
    """The instances of each app, in a stable order (oldest first)."""
    rows = session.exec(
        select(Instance)
        .where(col(Instance.app_id).in_(list(app_ids)))
        .order_by(col(Instance.created_at), col(Instance.id))
    )
    grouped: dict[int, list[Instance]] = {}
    for row in rows:
        grouped.setdefault(row.app_id, []).append(row)
    return grouped


def ready_endpoints(session: Session, tenant: str, app: str) -> list[str]:
    """The endpoints of the app's instances recorded ready (a standby's activator waits for one)."""
    query = (
        select(Instance.endpoint)
        .join(App, col(Instance.app_id) == App.id)
        .join(Tenant, col(App.tenant_id) == Tenant.id)
        .where(Tenant.name == tenant, App.name == app, Instance.state == InstanceState.READY)
    )
    return sorted(endpoint for endpoint in session.exec(query) if endpoint)
