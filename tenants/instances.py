"""What the reconciler reads and records: the desired state of every app, and the instances it runs.

The reconciler owns the `instance` rows; it rewrites one only when the instance changes, and writes the
audit events of its actions in the same transaction.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select, update

from tenants import audit, db
from tenants.enums import TenantStatus
from tenants.models import App, Instance, Plan, Tenant, Volume

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


# What a pass reads of each app, its tenant and its plan: columns, not rows (no objects to track, no times to
# parse), since every pass reads every app.
_DESIRED_COLUMNS: list[Any] = [
    App.id, App.tenant_id, App.name, App.revision, App.replicas, App.image, App.command, App.port, App.cpu_millicores,
    App.memory_mib, App.env, App.health_path, App.hostnames, App.https_redirect, App.hsts, App.volumes, App.kind,
    App.sealed_env, App.idle_stop_seconds, col(Tenant.name).label("tenant"), Tenant.isolation, Tenant.status,
    Plan.requests_per_second, Plan.burst, Plan.max_body_mib,
    col(Plan.idle_stop_seconds).label("plan_idle_stop_seconds"),
]  # fmt: skip
_DESIRED = (
    sa_select(*_DESIRED_COLUMNS)
    .join(Tenant, col(App.tenant_id) == Tenant.id)
    .join(Plan, col(Tenant.plan) == Plan.name)
    .order_by(Tenant.name, App.name)
)
_VOLUME_COLUMNS: list[Any] = [Volume.tenant_id, Volume.name, Volume.node, Volume.restoring, Volume.moving_to]
_VOLUMES = sa_select(*_VOLUME_COLUMNS)


def desired_apps(session: Session) -> list[DesiredApp]:
    found = session.execute(_VOLUMES).all()
    nodes = {(v.tenant_id, v.name): v.node for v in found}
    restoring = {(v.tenant_id, v.name) for v in found if v.restoring or v.moving_to is not None}
    return [
        DesiredApp(
            tenant=row.tenant,
            isolation=row.isolation,
            app_id=row.id,
            name=row.name,
            revision=row.revision,
            replicas=0 if row.status == TenantStatus.SUSPENDED or _restoring(row, restoring) else row.replicas,
            image=row.image,
            command=row.command,
            port=row.port,
            cpu_millicores=row.cpu_millicores,
            memory_mib=row.memory_mib,
            env=row.env,
            health_path=row.health_path,
            hostnames=row.hostnames,
            requests_per_second=row.requests_per_second,
            burst=row.burst,
            max_body_mib=row.max_body_mib,
            https_redirect=row.https_redirect,
            hsts=row.hsts,
            volumes=tuple((mount["volume"], mount["path"]) for mount in row.volumes),
            kind=row.kind,
            sealed_env=tuple(sorted(row.sealed_env.items())),
            idle_stop_seconds=row.idle_stop_seconds
            if row.idle_stop_seconds is not None
            else row.plan_idle_stop_seconds,
            volume_node=next((nodes[key] for m in row.volumes if (key := (row.tenant_id, m["volume"])) in nodes), None),
        )
        for row in session.execute(_DESIRED)
    ]


def _restoring(app: Row[Any], restoring: set[tuple[int, str]]) -> bool:
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
    rows = [row.model_dump() for row in changed if row.app_id in live_apps]
    if rows:  # one statement for them all, new or not (a merge would read each row first)
        table: Table = Instance.__table__  # type: ignore[attr-defined]
        insert = db.insert(session.get_bind().dialect.name, table)
        written = {name: insert.excluded[name] for name in rows[0] if name != "id"}
        session.execute(insert.on_conflict_do_update(index_elements=["id"], set_=written), rows)
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
