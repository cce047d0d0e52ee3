"""The console's overview in one query per table: every visible tenant with its apps' claims and readiness."""

from collections import Counter

from sqlmodel import Session, col, select

from tenants.enums import InstanceState
from tenants.models import App, Instance, Plan, Tenant, saved_id


def tenant_rows(session: Session, only: str | None = None) -> list[tuple[Tenant, Plan, list[App], int]]:
    """(tenant, plan, its apps, its ready instances) for every tenant, or just `only`."""
    query = select(Tenant, Plan).join(Plan, col(Tenant.plan) == Plan.name).order_by(Tenant.name)
    if only is not None:
        query = query.where(Tenant.name == only)
    tenants = list(session.exec(query))
    apps: dict[int, list[App]] = {}
    for app in session.exec(select(App)):
        apps.setdefault(app.tenant_id, []).append(app)
    ready = Counter(
        session.exec(
            select(App.tenant_id)
            .join(Instance, col(Instance.app_id) == App.id)
            .where(Instance.state == InstanceState.READY)
        )
    )
    return [(tenant, plan, apps.get(saved_id(tenant), []), ready[saved_id(tenant)]) for tenant, plan in tenants]
