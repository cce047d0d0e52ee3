"""Apps: the desired state a tenant deploys, checked against names, hostnames and the plan's quotas."""

from sqlmodel import Session, select

from tenants import audit, builds, volumes
from tenants.db import commit
from tenants.enums import AppKind, TenantStatus
from tenants.errors import Conflict, Invalid, NotFound
from tenants.instances import instances_of
from tenants.models import App, Tenant, saved_id, utcnow
from tenants.names import check_name
from tenants.quotas import check_quota, usage_of
from tenants.schemas import AppRead, AppSpec, InstanceRead
from tenants.tenancy import get_plan, get_tenant

# What a container is made from: a change of any of these is a new revision. Replicas and sleep are not in it.
UNREVISIONED_FIELDS = ("replicas", "idle_stop_seconds")
REVISIONED_FIELDS = tuple(field for field in AppSpec.model_fields if field not in UNREVISIONED_FIELDS)


def list_apps(session: Session, tenant: Tenant) -> list[App]:
    return list(session.exec(select(App).where(App.tenant_id == tenant.id).order_by(App.name)))


def get_app(session: Session, tenant: Tenant, name: str) -> App:
    app = session.exec(select(App).where(App.tenant_id == tenant.id, App.name == name)).first()
    if app is None:
        raise NotFound(f"tenant {tenant.name!r} has no app named {name!r}", field="app")
    return app


def deploy(
    session: Session, actor: str, tenant_name: str, app_name: str, spec: AppSpec, *, platform_domain: str
) -> tuple[App, bool]:
    """Create the app or update its spec; returns it and whether it was created.

    The revision goes up only when what the containers are made from changes, so deploying the same
    spec twice is a no-op (and logs nothing).
    """
    check_name(app_name, field="app")
    _check_env(spec)
    tenant = _active_tenant(session, tenant_name)
    builds.check_usable(session, tenant, spec.image)
    _check_hostnames(session, tenant, app_name, spec.hostnames, platform_domain)
    _check_volumes(session, tenant, app_name, spec)
    apps = list_apps(session, tenant)
    app = next((a for a in apps if a.name == app_name), None)
    others = [a for a in apps if a.name != app_name]
    candidate = App(tenant_id=saved_id(tenant), name=app_name, **spec.model_dump())
    check_quota(get_plan(session, tenant.plan), usage_of([*others, candidate]))

    if app is not None and app.kind != AppKind.WEB:
        raise Conflict(f"{app_name!r} is a {app.kind} service: manage it with `strata services`", field="app")
    sealed = sorted(set(spec.env) & set(app.sealed_env)) if app is not None else []
    if sealed:
        raise Invalid(f"env {sealed[0]} comes from a service bound to the app: leave it out, or unbind the service",
                      field="env")  # fmt: skip
    if app is None:
        session.add(candidate)
        audit.record(session, actor, "app.create", tenant.name, app=app_name, revision=1, replicas=spec.replicas)
        commit(session, conflict=f"app {tenant.name}/{app_name} exists already")
        return candidate, True

    wanted = spec.model_dump()  # as the row holds it (volumes as plain dicts)
    changed = [f for f in REVISIONED_FIELDS if getattr(app, f) != wanted[f]]
    if not changed and all(getattr(app, f) == wanted[f] for f in UNREVISIONED_FIELDS):
        return app, False
    for field in (*changed, *UNREVISIONED_FIELDS):
        setattr(app, field, wanted[field])
    if changed:
        app.revision += 1
    if "image" in changed:
        app.commit = None  # a build that deploys its image sets its commit after this
    app.updated_at = utcnow()
    audit.record(
        session,
        actor,
        "app.deploy",
        tenant.name,
        app=app_name,
        revision=app.revision,
        replicas=app.replicas,
        changed=changed,
    )
    session.commit()
    return app, False


def scale(session: Session, actor: str, tenant_name: str, app_name: str, replicas: int) -> App:
    tenant = _active_tenant(session, tenant_name)
    apps = list_apps(session, tenant)
    app = get_app(session, tenant, app_name)
    if app.replicas == replicas:
        return app
    if app.volumes and replicas > 1:
        raise Invalid(_ONE_WRITER, field="replicas")
    others = [a for a in apps if a.id != app.id]
    resized = app.model_copy(update={"replicas": replicas})
    check_quota(get_plan(session, tenant.plan), usage_of([*others, resized]))
    audit.record(session, actor, "app.scale", tenant.name, app=app_name, replicas=replicas, was=app.replicas)
    app.replicas = replicas
    app.updated_at = utcnow()
    session.commit()
    return app


def restart(session: Session, actor: str, tenant_name: str, app_name: str) -> App:
    """Roll every instance: a new revision with the same spec, replaced one at a time like a deploy."""
    tenant = _active_tenant(session, tenant_name)
    app = get_app(session, tenant, app_name)
    app.revision += 1
    app.updated_at = utcnow()
    audit.record(session, actor, "app.restart", tenant.name, app=app_name, revision=app.revision)
    session.commit()
    return app


def delete(session: Session, actor: str, tenant_name: str, app_name: str) -> None:
    tenant = get_tenant(session, tenant_name)
    app = get_app(session, tenant, app_name)
    if app.kind != AppKind.WEB:
        raise Conflict(f"{app_name!r} is a {app.kind} service: delete it with `strata services delete`", field="app")
    session.delete(app)
    audit.record(session, actor, "app.delete", tenant.name, app=app_name)
    session.commit()


def read_apps(session: Session, tenant: Tenant, apps: list[App]) -> list[AppRead]:
    """The API's view of `apps`: each spec with its instances as the reconciler last recorded them."""
    running = instances_of(session, [saved_id(app) for app in apps])
    return [
        AppRead(
            tenant=tenant.name,
            instances=[InstanceRead.model_validate(row) for row in running.get(saved_id(app), [])],
            **app.model_dump(exclude={"id", "tenant_id"}),
        )
        for app in apps
    ]


def read_app(session: Session, app: App, tenant: Tenant) -> AppRead:
    return read_apps(session, tenant, [app])[0]


def describe(session: Session, tenant_name: str, app_name: str) -> AppRead:
    """The app TENANT/APP as the API shows it (NotFound for either name)."""
    tenant = get_tenant(session, tenant_name)
    return read_app(session, get_app(session, tenant, app_name), tenant)


def _active_tenant(session: Session, name: str) -> Tenant:
    tenant = get_tenant(session, name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {name!r} is suspended; resume it before changing its apps")
    return tenant


def _check_env(spec: AppSpec) -> None:
    """The platform sets PORT (to the app's port) and STRATA_* in every container: an env that says otherwise
    would be shown by `apps show` and silently not be what runs, so it is refused."""
    port = spec.env.get("PORT")
    if port is not None and port != str(spec.port):
        raise Invalid(
            f"env PORT={port} conflicts with the app's port {spec.port}: the platform sets PORT to the port; "
            f"deploy with --port {port if port.isdigit() else 'N'} and leave PORT out (--unset-env PORT)",
            field="env",
        )
    reserved = sorted(key for key in spec.env if key.upper().startswith("STRATA_"))
    if reserved:
        raise Invalid(f"env {reserved[0]} is the platform's: STRATA_* names are set in every container", field="env")


_ONE_WRITER = (
    "an app with a volume runs one instance per volume (two would write the same data at once): replicas must be 0 or 1"
)


def _check_volumes(session: Session, tenant: Tenant, app_name: str, spec: AppSpec) -> None:
    """Each volume the spec mounts exists and is mounted by no other app; an app with volumes has one replica."""
    if not spec.volumes:
        return
    if spec.replicas > 1:
        raise Invalid(_ONE_WRITER, field="replicas")
    for mount in spec.volumes:
        volumes.get_volume(session, tenant, mount.volume)
        others = [app.name for app in volumes.mounted_by(session, tenant, mount.volume) if app.name != app_name]
        if others:
            raise Conflict(
                f"volume {mount.volume!r} is mounted by app {others[0]!r}: a volume has one writer", field="volumes"
            )


def _check_hostnames(
    session: Session, tenant: Tenant, app_name: str, hostnames: list[str], platform_domain: str
) -> None:
    """Extra hostnames must be outside the platform's domain and claimed by no other app."""
    suffix = "." + platform_domain
    for host in hostnames:
        if host == platform_domain or host.endswith(suffix):
            raise Invalid(
                f"{host!r} is under the platform's domain {platform_domain!r}; "
                f"the app is reached there already as {app_name}.{tenant.name}.{platform_domain}",
                field="hostnames",
            )
    if not hostnames:
        return
    rows = session.exec(select(App, Tenant.name).join(Tenant)).all()
    for other, owner in rows:
        if (owner, other.name) == (tenant.name, app_name):
            continue
        taken = set(hostnames) & set(other.hostnames)
        if taken:
            raise Conflict(f"hostname {sorted(taken)[0]!r} is used by another app already", field="hostnames")
