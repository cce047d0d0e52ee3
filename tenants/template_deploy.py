"""A catalog template deployed to a tenant: its services (made unless the tenant has them) bound to its app.

`check` judges the whole before anything is made — the app's name and image, each service's name and kind, and
the plan's quotas with the new services and the app counted together — so that a refusal comes at once (before
minutes of building an image) and nothing is left half-made by one. The caller (the API) then makes the services
`check` found missing, as any service is made (its filesystem, then its rows), and calls `finish`: the app
deployed and each service bound to it. A new app is deployed with no instance until it is bound, so that none
ever runs without its DATABASE_URL. Each step takes what exists as done: a deploy cut off between them is finished
by deploying the template again, and a deploy onto an existing app changes only its image and what the form sets.
"""

from dataclasses import dataclass

from sqlmodel import Session

from tenants import apps, audit, builds, services
from tenants.catalog import BOUND_AS, Template, TemplateDeploy
from tenants.enums import AppKind, TenantStatus
from tenants.errors import Conflict
from tenants.models import App, Service, Tenant, saved_id
from tenants.quotas import check_quota, usage_of
from tenants.schemas import AppRead, AppSpec, ServiceCreate
from tenants.secrets import SecretBox
from tenants.tenancy import get_plan, get_tenant


@dataclass(frozen=True)
class Steps:
    """What a template's deploy will do: deploy `spec` as `app`, after making `missing` (the template's services
    the tenant has none of), and bind every one of `services` (by name) to it."""

    tenant: str
    template: str
    app: str
    spec: AppSpec
    services: list[str]
    missing: list[ServiceCreate]


def check(session: Session, tenant_name: str, template: Template, body: TemplateDeploy) -> Steps:
    """The steps of deploying `template` as `body` asks, or the refusal any of them would meet: `Invalid`,
    `NotFound`, `Conflict` or `QuotaExceeded`, naming what to change."""
    spec = body.spec(template)
    tenant = get_tenant(session, tenant_name)
    if tenant.status == TenantStatus.SUSPENDED:
        raise Conflict(f"tenant {tenant_name!r} is suspended; resume it before deploying")
    existing = apps.list_apps(session, tenant)
    app = next((a for a in existing if a.name == body.app), None)
    if app is not None and app.kind != AppKind.WEB:
        raise Conflict(f"{body.app!r} is a {app.kind} service; deploy the template as another app", field="app")
    if app is not None:
        spec = _onto(app, spec, body)
    builds.check_usable(session, tenant, spec.image)
    have = {service.name: service for service, _ in services.list_services(session, tenant)}
    missing = []
    for wanted in template.services:
        if wanted.name == body.app:
            raise Conflict(
                f"the template's {wanted.kind} service is named {wanted.name!r}: name the app otherwise", field="app"
            )
        found = have.get(wanted.name)
        if found is None:
            services.check_create(session, tenant_name, wanted.name, wanted.size_mib)
            if app is not None:
                _check_bindable(session, None, app, wanted.kind)
            missing.append(wanted)
        elif found.kind != wanted.kind:
            raise Conflict(
                f"tenant {tenant_name!r} has a {found.kind} service named {wanted.name!r}; the template needs a "
                f"{wanted.kind} one of that name",
                field="service",
            )
        elif app is not None:
            _check_bindable(session, found, app, wanted.kind)
    _check_together(session, tenant, existing, body.app, spec, missing)
    return Steps(tenant_name, template.name, body.app, spec, [s.name for s in template.services], missing)


def finish(session: Session, box: SecretBox, actor: str, steps: Steps, created: list[str], *, domain: str) -> AppRead:
    """Deploy the app and bind each of the template's services (made by now) to it; returns the app as bound."""
    tenant = get_tenant(session, steps.tenant)
    new = all(a.name != steps.app for a in apps.list_apps(session, tenant))
    unbound = [name for name in steps.services if not _bound(session, tenant, name, steps.app)]
    first = steps.spec.model_copy(update={"replicas": 0}) if new and unbound else steps.spec
    apps.deploy(session, actor, steps.tenant, steps.app, first, platform_domain=domain)
    for name in unbound:
        services.bind(session, box, actor, steps.tenant, name, steps.app)
    if first.replicas != steps.spec.replicas:
        apps.scale(session, actor, steps.tenant, steps.app, steps.spec.replicas)
    audit.record(
        session, actor, "catalog.deploy", tenant.name, template=steps.template, app=steps.app,
        services=steps.services, created=created,
    )  # fmt: skip
    session.commit()
    return apps.describe(session, steps.tenant, steps.app)


def _bound(session: Session, tenant: Tenant, service: str, app: str) -> bool:
    found = services.get_service(session, tenant, service)
    return any(a.name == app for a in services.bound_apps(session, found))


def _onto(app: App, spec: AppSpec, body: TemplateDeploy) -> AppSpec:
    """The spec of the template deployed onto an existing app: its image (the form's or the template's) and what
    the form sets (replicas, its env fields), over all else the app has (env, hostnames, volumes, HTTPS...), and
    the template's defaults for env fields the app lacks: a template's deploy never loses what was set outside it."""
    current = AppSpec.model_validate({field: getattr(app, field) for field in AppSpec.model_fields})
    env = {**spec.env, **current.env, **{key: value for key, value in spec.env.items() if key in body.env}}
    replicas = current.replicas if body.replicas is None else body.replicas
    return current.model_copy(update={"image": spec.image, "replicas": replicas, "env": env})


def _check_bindable(session: Session, service: Service | None, app: App, kind: AppKind) -> None:
    """An existing app takes the binding of a service (an existing one, or one to be made: None) unless it has
    the variable from elsewhere."""
    if service is not None and any(a.id == app.id for a in services.bound_apps(session, service)):
        return
    variable = BOUND_AS.get(kind, "")
    if variable in app.sealed_env:
        raise Conflict(
            f"app {app.name!r} has a {variable} from another service: unbind it first (`strata services unbind`)",
            field="app",
        )
    if variable in app.env:
        raise Conflict(f"app {app.name!r} sets {variable} in its env: unset it first (--unset-env)", field="app")


def _check_together(
    session: Session, tenant: Tenant, existing: list[App], name: str, spec: AppSpec, missing: list[ServiceCreate]
) -> None:
    """The plan's quotas with the new services and the app counted together: each alone may fit, not all."""
    plan = get_plan(session, tenant.plan)
    made = [
        App(tenant_id=saved_id(tenant), name=service.name, image=services.POSTGRES_IMAGE, replicas=1,
            cpu_millicores=services.POSTGRES_CPU_MILLICORES, memory_mib=services.POSTGRES_MEMORY_MIB)
        for service in missing
    ]  # fmt: skip
    app = App(tenant_id=saved_id(tenant), name=name, **spec.model_dump())
    check_quota(plan, usage_of([*(a for a in existing if a.name != name), *made, app]))
