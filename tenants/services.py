"""Managed services (the add-on model): a tenant's PostgreSQL, made of parts that exist already — an app of
kind `postgres` running the platform's image on a volume of the same name — and its credentials, generated,
kept encrypted, and given to the apps it is bound to as `DATABASE_URL`, sealed: no listing ever shows them.

The service's filesystem is made by the caller (`hosting`) after `check_create` and before `record_create`,
as a volume's is.
"""

import secrets
from urllib.parse import quote

from sqlmodel import Session, col, select, update

from tenants import apps, audit, volumes
from tenants.db import commit
from tenants.enums import AppKind, InstanceState, Isolation
from tenants.errors import Conflict, Invalid, NotFound
from tenants.instances import instances_of
from tenants.models import App, Binding, Instance, Service, Tenant, Volume, saved_id, utcnow
from tenants.quotas import check_quota, usage_of
from tenants.schemas import ServiceRead
from tenants.secrets import SecretBox
from tenants.tenancy import get_plan, get_tenant

POSTGRES_IMAGE = "strata/postgres:15"
POSTGRES_PORT = 5432
POSTGRES_DATA = "/var/lib/postgresql/data"  # the volume's mount point; the image keeps its data in pgdata/ below
USERNAME = DATABASE = "app"  # the role owning the database (the first login), and the database
SUPERUSER = "postgres"  # reached over the container's socket only
ROTATION = "rotation"  # the actor of what a rotation does on its own
DATABASE_URL = "DATABASE_URL"
POSTGRES_CPU_MILLICORES, POSTGRES_MEMORY_MIB = 500, 256


def check_create(session: Session, tenant_name: str, name: str, size_mib: int) -> Tenant:
    """The tenant a service `name` with a volume of `size_mib` may be made for: its name free among the
    tenant's apps and volumes, its volume within the storage quota and its app within the others."""
    tenant = volumes.check_create(session, tenant_name, name, size_mib)
    if tenant.isolation == Isolation.DEDICATED:
        raise Conflict(
            f"tenant {tenant_name!r} is dedicated (its containers run on its own VMs only), and managed services "
            "live on the host's node for now: a dedicated tenant gets none yet"
        )
    existing = apps.list_apps(session, tenant)
    if any(app.name == name for app in existing):
        raise Conflict(f"tenant {tenant_name!r} has an app named {name!r} already", field="service")
    candidate = _app(tenant, name, "")
    check_quota(get_plan(session, tenant.plan), usage_of([*existing, candidate]))
    return tenant


def record_create(
    session: Session, box: SecretBox, actor: str, tenant: Tenant, name: str, kind: AppKind, size_mib: int, node: str
) -> Service:
    """The service's rows, once its volume's filesystem exists on `node`: the volume, its app and itself."""
    password = secrets.token_urlsafe(24)
    sealed = box.encrypt(password)
    session.add(Volume(tenant_id=saved_id(tenant), name=name, size_mib=size_mib, node=node))
    session.add(_app(tenant, name, sealed))
    service = Service(
        tenant_id=saved_id(tenant), name=name, kind=kind, username=USERNAME, database=DATABASE,
        password_encrypted=sealed,
    )  # fmt: skip
    session.add(service)
    audit.record(session, actor, "service.create", tenant.name, service=name, kind=kind, size_mib=size_mib)
    commit(session, conflict=f"tenant {tenant.name!r} has an app, volume or service named {name!r} already")
    session.refresh(service)
    return service


def list_services(session: Session, tenant: Tenant | None = None) -> list[tuple[Service, str]]:
    query = select(Service, Tenant.name).join(Tenant, col(Service.tenant_id) == Tenant.id)
    if tenant is not None:
        query = query.where(Service.tenant_id == tenant.id)
    return list(session.exec(query.order_by(Tenant.name, Service.name)).all())


def get_service(session: Session, tenant: Tenant, name: str) -> Service:
    service = session.exec(select(Service).where(Service.tenant_id == tenant.id, Service.name == name)).first()
    if service is None:
        raise NotFound(f"tenant {tenant.name!r} has no service named {name!r}", field="service")
    return service


def bind(session: Session, box: SecretBox, actor: str, tenant_name: str, name: str, app_name: str) -> App:
    """Give the app the service's `DATABASE_URL` (a new revision: its instances are replaced with it)."""
    tenant = get_tenant(session, tenant_name)
    service, app = get_service(session, tenant, name), apps.get_app(session, tenant, app_name)
    if app.kind != AppKind.WEB:
        raise Invalid(f"{app_name!r} is a service; bind services to apps", field="app")
    if _binding(session, service, app) is not None:
        raise Conflict(f"service {name!r} is bound to app {app_name!r} already")
    if DATABASE_URL in app.sealed_env:
        raise Conflict(f"app {app_name!r} has a DATABASE_URL already: unbind its service first", field="app")
    if DATABASE_URL in app.env:
        raise Conflict(f"app {app_name!r} sets DATABASE_URL in its env: unset it first (--unset-env)", field="app")
    session.add(Binding(service_id=saved_id(service), app_id=saved_id(app)))
    _reseal(app, {**app.sealed_env, DATABASE_URL: box.encrypt(database_url(service, box))})
    audit.record(session, actor, "service.bind", tenant.name, service=name, app=app_name, revision=app.revision)
    session.commit()
    return app


def unbind(session: Session, actor: str, tenant_name: str, name: str, app_name: str) -> App:
    """Take the service's `DATABASE_URL` from the app (a new revision)."""
    tenant = get_tenant(session, tenant_name)
    service, app = get_service(session, tenant, name), apps.get_app(session, tenant, app_name)
    binding = _binding(session, service, app)
    if binding is None:
        raise NotFound(f"service {name!r} is not bound to app {app_name!r}", field="app")
    _unbind(session, binding, app)
    audit.record(session, actor, "service.unbind", tenant.name, service=name, app=app_name, revision=app.revision)
    session.commit()
    return app


def delete(session: Session, actor: str, tenant_name: str, name: str, *, force: bool) -> None:
    """Delete the service with its app and volume rows (the caller removes the filesystem after). Refused while
    bound, unless `force`: then its apps lose their DATABASE_URL (a new revision each)."""
    tenant = get_tenant(session, tenant_name)
    service = get_service(session, tenant, name)
    bound = bound_apps(session, service)
    if bound and not force:
        raise Conflict(
            f"service {name!r} is bound to app {bound[0].name!r}; unbind it first, or delete with --force "
            "(the apps lose their DATABASE_URL, and the data is deleted)"
        )
    for app in bound:
        binding = _binding(session, service, app)
        assert binding is not None  # found just above
        _unbind(session, binding, app)
    session.delete(apps.get_app(session, tenant, name))
    session.delete(volumes.get_volume(session, tenant, name))
    session.delete(service)
    audit.record(session, actor, "service.delete", tenant.name, service=name, unbound=[a.name for a in bound])
    session.commit()


def running_service(
    session: Session, tenant_name: str, name: str, then: str = "its credentials rotate"
) -> tuple[Service, Instance]:
    """The service (whose credentials are to rotate, say), and its ready instance (where its roles are changed,
    its database dumped); `Conflict` while it is not ready, saying what will be done `then`."""
    tenant = get_tenant(session, tenant_name)
    service = get_service(session, tenant, name)
    app = apps.get_app(session, tenant, name)
    ready = [i for i in instances_of(session, [saved_id(app)]).get(saved_id(app), []) if i.state == InstanceState.READY]
    if not ready:
        raise Conflict(f"service {name!r} is not running: {then} once it is ready", field="service")
    return service, ready[0]


def new_login() -> str:
    """A login's name for a rotation: the owner's name and a random suffix, never one used before."""
    return f"{USERNAME}_{secrets.token_hex(4)}"


def begin_rotation(
    session: Session, box: SecretBox, actor: str, tenant_name: str, name: str, was: str, login: str, password: str
) -> bool:
    """Make `login` (made in the server already) the one the bound apps are given, a new revision each, and
    record `was` as retiring; False, with nothing changed, if the service's login is no longer `was` or another
    rotation is under way (one at a time, whichever daemon runs it: the update is conditional)."""
    tenant = get_tenant(session, tenant_name)
    service = get_service(session, tenant, name)
    sealed = box.encrypt(password)
    claimed = session.exec(
        update(Service)
        .where(col(Service.id) == service.id, col(Service.username) == was, col(Service.retiring).is_(None))
        .values(username=login, password_encrypted=sealed, retiring=was)
    )
    if claimed.rowcount != 1:
        session.rollback()
        return False
    session.refresh(service)
    url = box.encrypt(database_url(service, box))
    bound = bound_apps(session, service)
    for app in bound:
        _reseal(app, {**app.sealed_env, DATABASE_URL: url})
    audit.record(
        session, actor, "service.credentials.rotate", tenant.name, service=name, login=login,
        retiring=was, apps={app.name: app.revision for app in bound},
    )  # fmt: skip
    session.commit()
    return True


def still_rolling(session: Session, box: SecretBox, tenant_name: str, name: str) -> list[str]:
    """The bound apps that may still use a login but the service's: those with an instance of an older revision
    left, and those bound with an older login (bound while the rotation began: given the current one now, in a
    new revision)."""
    tenant = get_tenant(session, tenant_name)
    service = get_service(session, tenant, name)
    bound = bound_apps(session, service)
    current = database_url(service, box)
    stale = [app for app in bound if box.decrypt(app.sealed_env[DATABASE_URL]) != current]
    if stale:
        for app in stale:  # bound while the rotation began, with the login it replaces
            _reseal(app, {**app.sealed_env, DATABASE_URL: box.encrypt(current)})
        audit.record(session, ROTATION, "service.credentials.reseal", tenant.name, service=name,
                     apps={app.name: app.revision for app in stale})  # fmt: skip
        session.commit()
    running = instances_of(session, [saved_id(app) for app in bound])
    old = {app.name for app in stale} | {
        app.name for app in bound if any(i.revision != app.revision for i in running.get(saved_id(app), []))
    }
    return sorted(old)


def finish_rotation(session: Session, actor: str, tenant_name: str, name: str, retired: str) -> None:
    """The retiring login is gone from the server: forget it."""
    tenant = get_tenant(session, tenant_name)
    service = get_service(session, tenant, name)
    if service.retiring == retired:
        service.retiring = None
        audit.record(session, actor, "service.credentials.retire", tenant.name, service=name, login=retired)
        session.commit()


def bound_apps(session: Session, service: Service) -> list[App]:
    rows = session.exec(
        select(App).join(Binding, col(Binding.app_id) == App.id).where(Binding.service_id == service.id)
    )
    return sorted(rows, key=lambda app: app.name)


def database_url(service: Service, box: SecretBox) -> str:
    """`postgresql://USER:PASSWORD@NAME:5432/DATABASE`: the service's app is NAME on its tenant's network."""
    password = quote(box.decrypt(service.password_encrypted), safe="")
    return f"postgresql://{service.username}:{password}@{service.name}:{POSTGRES_PORT}/{service.database}"


def read(session: Session, service: Service, tenant: str, used_mib: float | None) -> ServiceRead:
    owner = get_tenant(session, tenant)
    volume = volumes.get_volume(session, owner, service.name)
    app = apps.read_app(session, apps.get_app(session, owner, service.name), owner)
    return ServiceRead(
        tenant=tenant, name=service.name, kind=AppKind(service.kind), host=service.name, port=POSTGRES_PORT,
        database=service.database, username=service.username, size_mib=volume.size_mib, used_mib=used_mib,
        ready=app.ready() > 0, status=app.reason(), bound_to=[a.name for a in bound_apps(session, service)],
        created_at=service.created_at,
    )  # fmt: skip


def _app(tenant: Tenant, name: str, sealed_password: str) -> App:
    return App(
        tenant_id=saved_id(tenant), name=name, kind=AppKind.POSTGRES, image=POSTGRES_IMAGE, port=POSTGRES_PORT,
        replicas=1, cpu_millicores=POSTGRES_CPU_MILLICORES, memory_mib=POSTGRES_MEMORY_MIB,
        env={"POSTGRES_USER": USERNAME, "POSTGRES_DB": DATABASE},
        sealed_env={"POSTGRES_PASSWORD": sealed_password}, volumes=[{"volume": name, "path": POSTGRES_DATA}],
    )  # fmt: skip


def _binding(session: Session, service: Service, app: App) -> Binding | None:
    return session.exec(select(Binding).where(Binding.service_id == service.id, Binding.app_id == app.id)).first()


def _unbind(session: Session, binding: Binding, app: App) -> None:
    session.delete(binding)
    _reseal(app, {key: value for key, value in app.sealed_env.items() if key != DATABASE_URL})


def _reseal(app: App, sealed: dict[str, str]) -> None:
    app.sealed_env = sealed
    app.revision += 1
    app.updated_at = utcnow()
