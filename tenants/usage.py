"""Metered usage: what each tenant's apps used, summed per hour (UTC) and kind of node in `usage_hour`.

The meter (`hosting.paas.usage`) adds a batch of amounts in one transaction (`record`): rows are only ever added
to, so their sums are counters that never go down; reports and metrics sum them over a period.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from tenants.models import App, Plan, Tenant, UsageHour, Volume, saved_id
from tenants.schemas import PlanRead, UsageLine, UsageReport

MIB_PER_GIB = 1024
SECONDS_PER_HOUR = 3600


@dataclass
class Amounts:
    """What was used, to be added to an hour's row."""

    cpu_seconds: float = 0.0
    memory_mib_hours: float = 0.0
    storage_gib_hours: float = 0.0
    instance_hours: float = 0.0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, other: "Amounts") -> None:
        for field in FIELDS:
            setattr(self, field, getattr(self, field) + getattr(other, field))


FIELDS = tuple(field.name for field in fields(Amounts))


@dataclass(frozen=True)
class UsageKey:
    """Whose usage, when (the hour, UTC, truncated) and on what kind of node (an `Isolation`)."""

    tenant: str
    app: str
    hour: datetime
    node_kind: str


Batch = dict[UsageKey, Amounts]
Traffic = Mapping[tuple[str, str], tuple[int, int, int]]  # (tenant, app) -> requests, bytes in, bytes out


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def merge(batch: Batch, key: UsageKey, amounts: Amounts) -> None:
    batch.setdefault(key, Amounts()).add(amounts)


def record(session: Session, batch: Batch, traffic: Traffic, stored_seconds: float, now: datetime) -> None:
    """Add `batch`, the front door's `traffic` and `stored_seconds` of every volume's size to the hours' rows,
    and commit. Traffic and storage count on the kind of node the tenant's isolation gives it; a tenant deleted
    meanwhile is left out."""
    tenants = {tenant.name: tenant for tenant in session.exec(select(Tenant))}
    hour, whole = hour_of(now), {key: replace(amounts) for key, amounts in batch.items()}  # `batch` stays as it was
    for (tenant, app), (requests, bytes_in, bytes_out) in traffic.items():
        if tenant in tenants:
            key = UsageKey(tenant, app, hour, tenants[tenant].isolation)
            merge(whole, key, Amounts(requests=requests, bytes_in=bytes_in, bytes_out=bytes_out))
    for owner, app, size_mib in _volumes(session) if stored_seconds > 0 else []:
        gib_hours = size_mib / MIB_PER_GIB * stored_seconds / SECONDS_PER_HOUR
        merge(whole, UsageKey(owner.name, app, hour, owner.isolation), Amounts(storage_gib_hours=gib_hours))
    ids = {name: saved_id(tenant) for name, tenant in tenants.items()}
    whole = {key: amounts for key, amounts in whole.items() if key.tenant in ids}
    hours = {key.hour for key in whole}
    rows = {
        (row.tenant_id, row.app, row.hour, row.node_kind): row
        for row in session.exec(select(UsageHour).where(col(UsageHour.hour).in_(hours)))
    }
    for key, amounts in whole.items():
        tenant_id = ids[key.tenant]
        row = rows.get((tenant_id, key.app, key.hour, key.node_kind))
        if row is None:
            row = UsageHour(tenant_id=tenant_id, app=key.app, hour=key.hour, node_kind=key.node_kind)
            rows[(tenant_id, key.app, key.hour, key.node_kind)] = row
        for field in FIELDS:
            setattr(row, field, getattr(row, field) + getattr(amounts, field))
        session.add(row)
    session.commit()


def _volumes(session: Session) -> list[tuple[Tenant, str, int]]:
    """Each volume's tenant, the app that mounts it ("" if none does) and its size."""
    mounted: dict[tuple[int | None, str], str] = {
        (app.tenant_id, mount["volume"]): app.name for app in session.exec(select(App)) for mount in app.volumes
    }
    query = select(Volume, Tenant).where(Volume.tenant_id == Tenant.id)
    return [
        (tenant, mounted.get((tenant.id, volume.name), ""), volume.size_mib) for volume, tenant in session.exec(query)
    ]


def report(session: Session, tenant: str | None, since: datetime) -> list[UsageLine]:
    """Usage per tenant (all, or `tenant`'s), app and kind of node, summed over the hours from `since` (its hour
    included) on, by tenant and app."""
    sums = [func.sum(getattr(UsageHour, field)) for field in FIELDS]
    query = (
        select(Tenant.name, UsageHour.app, UsageHour.node_kind, *sums)
        .where(UsageHour.tenant_id == Tenant.id, col(UsageHour.hour) >= hour_of(since))
        .group_by(Tenant.name, UsageHour.app, UsageHour.node_kind)
        .order_by(Tenant.name, UsageHour.app, UsageHour.node_kind)
    )
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    columns = ("tenant", "app", "node_kind", *FIELDS)
    return [UsageLine.model_validate(dict(zip(columns, row, strict=True))) for row in session.exec(query)]


def usage_report(session: Session, tenant: str | None, since: datetime, now: datetime) -> UsageReport:
    """`report` up to `now`, with the plan of each tenant (all, or `tenant`) to hold it against."""
    query = select(Tenant.name, Plan).where(Tenant.plan == Plan.name)
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    plans = {name: PlanRead.model_validate(plan) for name, plan in session.exec(query)}
    return UsageReport(since=hour_of(since), until=now, lines=report(session, tenant, since), plans=plans)
