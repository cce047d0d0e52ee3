"""What the reconciler reads and records: the desired state of every app, and the instances it runs.

The reconciler owns the `instance` rows; it rewrites one only when the instance changes, and writes the
audit events of its actions in the same transaction.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, String, Table, cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select, update

from tenants import audit, db
from tenants.enums import InstanceState, TenantStatus
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


def _text(column: Any) -> Any:
    """A JSON column read as its text: parsed only when its row changed (`desired_apps`), and hashable."""
    return cast(column, String).label(column.key)


# What a pass reads of each app, its tenant and its plan: columns, not rows (no objects to track, no times to
# parse), since every pass reads every app.
_DESIRED_COLUMNS: list[Any] = [
    App.id, App.tenant_id, App.name, App.revision, App.replicas, App.image, _text(App.command), App.port,
    App.cpu_millicores, App.memory_mib, _text(App.env), App.health_path, _text(App.hostnames), App.https_redirect,
    App.hsts, _text(App.volumes), App.kind, _text(App.sealed_env), App.idle_stop_seconds,
    col(Tenant.name).label("tenant"), Tenant.isolation, Tenant.status, Plan.requests_per_second, Plan.burst,
    Plan.max_body_mib, col(Plan.idle_stop_seconds).label("plan_idle_stop_seconds"),
]  # fmt: skip
_DESIRED = (
    sa_select(*_DESIRED_COLUMNS)
    .join(Tenant, col(App.tenant_id) == Tenant.id)
    .join(Plan, col(Tenant.plan) == Plan.name)
    .order_by(Tenant.name, App.name)
)
_VOLUME_COLUMNS: list[Any] = [Volume.tenant_id, Volume.name, Volume.node, Volume.restoring, Volume.moving_to]
_VOLUMES = sa_select(*_VOLUME_COLUMNS).order_by(col(Volume.id))


@dataclass
class DesiredCache:
    """What `desired_apps` built from the rows it read, kept by its caller for the next read."""

    volumes: tuple[Row[Any], ...] = ()
    apps: dict[Row[Any], DesiredApp] = field(default_factory=dict)


def desired_apps(session: Session, cache: DesiredCache | None = None) -> list[DesiredApp]:
    """Every app as the reconciler must make it run, read whole each time. With a `cache` (left holding this
    read's), an app whose row reads the same as the last time, the volumes too, is not parsed and built again:
    that was most of a read's time at 1,000 apps."""
    volumes = tuple(session.execute(_VOLUMES))
    known = cache.apps if cache is not None and cache.volumes == volumes else {}
    nodes = {(v.tenant_id, v.name): v.node for v in volumes}
    restoring = {(v.tenant_id, v.name) for v in volumes if v.restoring or v.moving_to is not None}
    built = {row: known.get(row) or _desired(row, nodes, restoring) for row in session.execute(_DESIRED)}
    if cache is not None:
        cache.volumes, cache.apps = volumes, built
    return list(built.values())


def _desired(row: Row[Any], nodes: Mapping[tuple[int, str], str], restoring: set[tuple[int, str]]) -> DesiredApp:
    mounts: list[dict[str, str]] = json.loads(row.volumes)
    restored = any((row.tenant_id, mount["volume"]) in restoring for mount in mounts)  # none of it runs meanwhile
    sealed_env: dict[str, str] = json.loads(row.sealed_env)
    return DesiredApp(
        tenant=row.tenant,
        isolation=row.isolation,
        app_id=row.id,
        name=row.name,
        revision=row.revision,
        replicas=0 if row.status == TenantStatus.SUSPENDED or restored else row.replicas,
        image=row.image,
        command=json.loads(row.command) if row.command is not None else None,
        port=row.port,
        cpu_millicores=row.cpu_millicores,
        memory_mib=row.memory_mib,
        env=json.loads(row.env),
        health_path=row.health_path,
        hostnames=json.loads(row.hostnames),
        requests_per_second=row.requests_per_second,
        burst=row.burst,
        max_body_mib=row.max_body_mib,
        https_redirect=row.https_redirect,
        hsts=row.hsts,
        volumes=tuple((mount["volume"], mount["path"]) for mount in mounts),
        kind=row.kind,
        sealed_env=tuple(sorted(sealed_env.items())),
        idle_stop_seconds=row.idle_stop_seconds if row.idle_stop_seconds is not None else row.plan_idle_stop_seconds,
        volume_node=next((nodes[key] for m in mounts if (key := (row.tenant_id, m["volume"])) in nodes), None),
    )


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
    audit.record_all(session, RECONCILER, ((event.action, event.tenant, event.detail) for event in events))
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


def ready_instances(session: Session, tenant: str, app: str) -> list[Instance]:
    """The app's instances recorded ready (a standby's activator waits for one)."""
    query = (
        select(Instance)
        .join(App, col(Instance.app_id) == App.id)
        .join(Tenant, col(App.tenant_id) == Tenant.id)
        .where(Tenant.name == tenant, App.name == app, Instance.state == InstanceState.READY)
        .order_by(Instance.id)
    )
    return list(session.exec(query))


def mark_stopping(session: Session, instance: str) -> None:
    """The instance is being removed: recorded at once, for the standbys' front doors to let go of it."""
    session.exec(update(Instance).where(col(Instance.id) == instance).values(state=InstanceState.STOPPING))
    session.commit()
